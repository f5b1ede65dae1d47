#!/bin/sh
# One analysis over a dataset's records. Usage: analyze.sh stats|trends|anomalies
# stdin: {"data": {"records": [...]}}; takes ~200ms so the three analyses visibly overlap.
set -eu
what=${1:?usage: analyze.sh stats|trends|anomalies}
input=$(cat)
records=$(printf '%s' "$input" | sed -n 's/.*"records":\[\([^]]*\)\].*/\1/p')
[ -n "$records" ] || { echo "no records in the input" >&2; exit 2; }
sleep 0.2
printf '%s\n' "$records" | tr ',' '\n' | awk -v what="$what" '
  { x[NR] = $1; sum += $1 }
  END {
    n = NR; mean = sum / n
    for (i = 1; i <= n; i++) var += (x[i] - mean) ^ 2
    sd = sqrt(var / n)
    if (what == "stats") {
      printf "{\"count\":%d,\"mean\":%.2f,\"stddev\":%.2f}\n", n, mean, sd
    } else if (what == "trends") {
      half = int(n / 2); a = 0; b = 0
      for (i = 1; i <= half; i++) a += x[i]
      for (i = half + 1; i <= n; i++) b += x[i]
      a /= half; b /= (n - half)
      printf "{\"first_half\":%.2f,\"second_half\":%.2f,\"direction\":\"%s\"}\n", a, b, (b > a ? "up" : "down")
    } else if (what == "anomalies") {
      printf "{\"outliers\":["; sep = ""
      for (i = 1; i <= n; i++) if (sd > 0 && (x[i] - mean) / sd > 2) { printf "%s%d", sep, x[i]; sep = "," }
      printf "]}\n"
    } else {
      print "unknown analysis " what > "/dev/stderr"; exit 2
    }
  }'
