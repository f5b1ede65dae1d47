#!/bin/sh
# Fetches a dataset's records. stdin: {"dataset": "..."} (or {"item": "..."} as a map element);
# stdout: {"dataset", "records": [...]}
set -eu
input=$(cat)
dataset=$(printf '%s' "$input" | sed -n 's/.*"dataset":"\([^"]*\)".*/\1/p')
[ -n "$dataset" ] || dataset=$(printf '%s' "$input" | sed -n 's/.*"item":"\([^"]*\)".*/\1/p')
case "$dataset" in
  "") echo "argument dataset is missing" >&2; exit 2 ;;
  sales) records="12,15,11,14,90,13,16,18" ;;
  traffic) records="300,320,310,305,330,900,340" ;;
  *) records="1,2,3,4,5" ;;
esac
printf '{"dataset":"%s","records":[%s]}\n' "$dataset" "$records"
