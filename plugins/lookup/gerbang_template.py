"""Lookup ``gerbang_template``: ``ansible.builtin.template`` without a deep copy of every variable.

ansible-core's template lookup deep-copies all of the task's variables on every call (its own
FIXME asks for a ChainMap instead). Every gateway carries the compiled city in its variables
(~0.5 MB of nested data), so on a no-change rollout that copy was 45 % of the controller's CPU
(py-spy of ``site.yml``, see bench/rollout.sh). The lookup only adds a few top-level keys
(``template_path``, ``ansible_managed``, ``template_vars``) to its copy and the roles' templates
never change a variable, so a shallow copy renders exactly the same text.
"""

from __future__ import annotations

from ansible.plugins.lookup.template import LookupModule as TemplateLookup

DOCUMENTATION = r"""
name: gerbang_template
author: Gerbang Kota
short_description: ansible.builtin.template lookup that copies task variables shallowly
description:
  - Same options, search path and result as M(ansible.builtin.template) used as a lookup.
  - The task variables are copied one level deep instead of recursively, which is what makes
    the builtin slow when a host carries a large fact. Templates must not modify variables.
extends_documentation_fragment: []
options:
  _terms:
    description: templates to render, searched like ansible.builtin.template's
  convert_data:
    type: bool
    default: true
    description: whether to convert YAML into data
  template_vars:
    type: dict
    default: {}
    description: extra variables for the template
  jinja2_native:
    type: bool
    default: true
    description: ignored, as in the builtin
  variable_start_string:
    type: str
    default: "{{"
    description: start of a print statement
  variable_end_string:
    type: str
    default: "}}"
    description: end of a print statement
  comment_start_string:
    type: str
    default: "{#"
    description: start of a comment
  comment_end_string:
    type: str
    default: "#}"
    description: end of a comment
  trim_blocks:
    type: bool
    default: true
    description: whether to remove the first newline after a block
"""

RETURN = r"""
_raw:
  description: the rendered templates
  type: list
  elements: raw
"""


class _ShallowCopyOnDeepcopy(dict):
    """Task variables whose ``copy.deepcopy`` is a one-level copy (a plain dict)."""

    def __deepcopy__(self, memo):
        return dict(self)


class LookupModule(TemplateLookup):
    def run(self, terms, variables=None, **kwargs):
        return super().run(terms, _ShallowCopyOnDeepcopy(variables or {}), **kwargs)
