#!/usr/bin/env bash
# Exits at once with code $EXIT_CODE (default 0).
exit "${EXIT_CODE:-0}"
