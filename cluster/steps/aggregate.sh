#!/bin/sh
# Combines the three analyses into one report. stdin: {"stats", "trends", "anomalies", "dataset"}
set -eu
input=$(cat)
dataset=$(printf '%s' "$input" | sed -n 's/.*"dataset":"\([^"]*\)".*/\1/p')
outliers=$(printf '%s' "$input" | sed -n 's/.*"outliers":\[\([^]]*\)\].*/\1/p')
if [ -n "$outliers" ]; then verdict="review"; else verdict="ok"; fi
printf '{"dataset":"%s","verdict":"%s","analyses":%s}\n' "$dataset" "$verdict" "$input"
