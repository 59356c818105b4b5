#!/usr/bin/env bash
# Exits with code 1 at once (fast start: precise backoff timing).
exit 1
