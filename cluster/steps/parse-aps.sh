#!/bin/sh
# Parses an APS process file ("key: value" lines) into JSON.
# stdin: {"file_path": "..."}; stdout: {"process_id", "priority", "tasks": [...]}
set -eu
input=$(cat)
file=$(printf '%s' "$input" | sed -n 's/.*"file_path":"\([^"]*\)".*/\1/p')
[ -n "$file" ] || { echo "argument file_path is missing" >&2; exit 2; }
[ -r "$file" ] || { echo "cannot read APS file $file" >&2; exit 1; }
get() { sed -n "s/^$1: *//p" "$file" | head -n 1; }
id=$(get process_id)
priority=$(get priority)
tasks=$(get tasks | awk -F', *' '{for (i = 1; i <= NF; i++) printf "%s\"%s\"", (i > 1 ? "," : ""), $i}')
printf '{"process_id":"%s","priority":"%s","tasks":[%s]}\n' "$id" "${priority:-normal}" "$tasks"
