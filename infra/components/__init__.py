"""One ComponentResource per concern: the vault, the execution host, and its log group."""

from components.execution_host import ExecutionHost, ExecutionHostArgs
from components.host_logs import HostLogs, HostLogsArgs
from components.vault import Vault, VaultArgs

__all__ = ["ExecutionHost", "ExecutionHostArgs", "HostLogs", "HostLogsArgs", "Vault", "VaultArgs"]
