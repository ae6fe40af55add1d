#!/usr/bin/env bash
# README command 1, the main job: bring up the whole-city lab (34 gateways from the production
# inventory's structure, clients, a stand-in internet) and roll the city's policy out to it with
# site.yml, then print what the city now enforces, as seen by real clients.
# The lab stays up afterwards for exploring; `bash scripts/lab/lab-down.sh` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/bootstrap.sh
bash scripts/lab/setup-host.sh
bash scripts/lab/build-image.sh
start=$SECONDS
bash scripts/lab/lab-up.sh "$@"
echo "lab up in $((SECONDS - start)) s"
start=$SECONDS
ansible-playbook site.yml
echo "site.yml (fresh rollout) in $((SECONDS - start)) s"
bash scripts/lab/city-check.sh
