#!/usr/bin/env bash
# The project's whole test run (README command 2; CI runs it through .ci/run):
#   set-up (venv, host fixes, gateway image) → lint → production validation (no host contacted)
#   → unit tests → Molecule scenarios → a lab of a few sites rolled out with site.yml, then again
#   by the no-change fast path and with every role (neither may change anything) → lab behaviour
#   tests → README command 1 (the whole city: 34 gateways, rollout, printed check) → tear-down, and a
#   check that no container, namespace, state folder or process of the lab is left (lab.py verify-clean).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
# Sites of different groups, allocations and roles (the behaviour tests name them).
LAB_SITES=${LAB_SITES:-setda,bappeda,bapenda,diskominfo,dindikbud,rsud,kec-kasemen,mcc}
step() { printf '\n=== %s (%s s)\n' "$*" "$SECONDS"; }

step "set-up"
bash scripts/bootstrap.sh
bash scripts/lab/setup-host.sh
bash scripts/lab/build-image.sh

step "lint"
yamllint -s .
ansible-lint -q
python3 scripts/lab/gen-inventory.py --check

step "validate the production inventory (no host is contacted)"
ansible-playbook -i inventory/production playbooks/validate.yml

step "unit tests (compiler, broken-policy fixtures, modules)"
pytest -q -p no:cacheprovider tests/unit tests/modules

step "molecule"
for scenario in roles/*/molecule/default molecule/site; do
  [ -f "$scenario/molecule.yml" ] || continue
  dir=${scenario%/molecule/*}; name=${scenario##*/}
  [ "$scenario" = molecule/site ] && dir=.
  step "molecule test: $dir ($name)"
  (cd "$dir" && molecule test -s "$name")
done

step "lab: $LAB_SITES"
cleanup() { bash scripts/lab/lab-down.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
bash scripts/lab/lab-up.sh --sites "$LAB_SITES"
ansible-playbook site.yml --limit "$LAB_SITES"

# Second run: the no-change fast path (every gateway in sync, no role runs). Third run: every
# role on every gateway (gerbang_full_run), which must find nothing to change either.
for mode in fast-path full; do
  step "rollout again ($mode): must change nothing"
  extra=(); [ "$mode" = full ] && extra=(-e gerbang_full_run=true)
  ansible-playbook site.yml --limit "$LAB_SITES" "${extra[@]}" | tee /tmp/gerbang-rerun.log | tail -n 12
  if grep -E "changed=[1-9]|failed=[1-9]|unreachable=[1-9]" /tmp/gerbang-rerun.log; then
    echo "a no-change rollout ($mode) changed something (above)" >&2
    exit 1
  fi
done

step "lab behaviour tests"
GERBANG_LAB_REQUIRED=1 GERBANG_LAB_SITES="$LAB_SITES" pytest -q -p no:cacheprovider tests/lab

step "README command 1: the whole city (34 gateways), rollout and printed check"
cleanup
bash scripts/city.sh

step "tear-down: nothing of the lab may be left"
trap - EXIT
bash scripts/lab/lab-down.sh
python3 scripts/lab/lab.py verify-clean
step "done"
