"""Response playbooks: contain first, then the checklist, for every rule the on-call person can be paged for."""

from keyguard.incidents.playbooks import Playbook, load_playbooks, playbook_for

__all__ = ["Playbook", "load_playbooks", "playbook_for"]
