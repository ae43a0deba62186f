#!/bin/sh
# As Redis's image does: `redis-server --flags` without a configuration file turns protected mode
# off, so clients on the container network can connect.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "${2:-}" = "${2#/}" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
