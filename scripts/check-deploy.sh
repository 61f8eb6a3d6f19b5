#!/usr/bin/env bash
# Lint and check the deployment files: the Dockerfile (hadolint), the Prometheus configuration
# and alert rules with their unit tests (promtool). Installs Debian's prometheus (promtool) and
# nginx-light (for the proxy's tests) when they are missing and this runs as root; elsewhere a
# missing tool is skipped with a message, except in CI, where it is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}

say() { printf 'check-deploy: %s\n' "$*"; }

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    # Packages only: their services must not start here (policy-rc.d 101 = "not now").
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -z $made_policy ]] || rm -f "$policy"
  elif [[ -n ${CI:-} ]]; then
    say "missing ${missing[*]}: apt-get install -y ${missing[*]}" >&2
    exit 1
  else
    say "missing ${missing[*]} (apt-get install -y ${missing[*]}); their checks are skipped"
  fi
fi

say "hadolint Dockerfile"
"$BIN/hadolint" Dockerfile

if command -v promtool >/dev/null; then
  say "promtool: configuration, rules and their unit tests"
  promtool check config deploy/prometheus/prometheus.yml >/dev/null
  promtool check rules deploy/prometheus/alerts.yml
  promtool test rules deploy/prometheus/alerts.test.yml
fi
