#!/usr/bin/env bash
# The project's whole test run (README command 2; CI runs it through .ci/run):
#   set-up (venv, host fixes, gateway image) → lint → production validation (no host contacted)
#   → Molecule scenarios → a lab of a few sites rolled out with site.yml → one pytest run
#   (unit, module, broken-policy fixtures and lab behaviour tests). Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
LAB_SITES=${LAB_SITES:-diskominfo,setda,rsud,kec-kasemen,mcc}
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

step "set-up"
bash scripts/bootstrap.sh
bash scripts/lab/setup-host.sh
bash scripts/lab/build-image.sh

step "lint"
yamllint -s .
ansible-lint -q

step "validate the production inventory (no host is contacted)"
ansible-playbook -i inventory/production playbooks/validate.yml

step "molecule"
for scenario in roles/*/molecule/default molecule/site; do
  [ -f "$scenario/molecule.yml" ] || continue
  dir=${scenario%/molecule/*}; name=${scenario##*/}
  step "molecule test: $dir ($name)"
  (cd "$dir" && molecule test -s "$name")
done

step "lab: $LAB_SITES"
cleanup() { bash scripts/lab/lab-down.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
bash scripts/lab/lab-up.sh --sites "$LAB_SITES"
ansible-playbook site.yml --limit "$LAB_SITES"
step "pytest"
GERBANG_LAB_REQUIRED=1 GERBANG_LAB_SITES="$LAB_SITES" pytest -q tests
