#!/usr/bin/env bash
# Does nothing until it is signalled: `sleep infinity` in its place (same pid, same credentials).
exec sleep infinity
