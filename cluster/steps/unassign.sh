#!/bin/sh
# Undo for assign_agent: releases the agent.
# stdin: {"arguments": {...}, "result": {...}}
set -eu
input=$(cat)
agent=$(printf '%s' "$input" | sed -n 's/.*"agent_id":"\([^"]*\)".*/\1/p')
echo "unassigned agent ${agent:-unknown} (run $SWARM_RUN_ID)" >&2
echo '{"unassigned": true}'
