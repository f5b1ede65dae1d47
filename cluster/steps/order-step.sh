#!/bin/sh
# One step of the order saga, and its undo. Usage: order-step.sh ACTION
# Appends "ACTION order=ID" to the audit log named in the arguments and prints a JSON receipt.
# stdin: {"order_id", "audit_log", ...} or, for undo, {"arguments": {...}, "result": {...}}.
# Fails when the arguments say "fail_at": "ACTION".
set -eu
action=${1:?usage: order-step.sh ACTION}
input=$(cat)
field() { printf '%s' "$input" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n 1; }
order=$(field order_id)
log=$(field audit_log)
if [ "$(field fail_at)" = "$action" ]; then
  echo "$action failed for order $order: carrier unavailable" >&2
  exit 1
fi
[ -n "$log" ] && echo "$action order=$order attempt=$SWARM_ATTEMPT" >> "$log"
printf '{"action":"%s","order_id":"%s","ref":"%s-%s"}\n' "$action" "$order" "$action" "$order"
