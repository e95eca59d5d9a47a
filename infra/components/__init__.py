"""One ComponentResource per concern: the release, the vault, the execution host, and its log group."""

from components.execution_host import ExecutionHost, ExecutionHostArgs
from components.host_logs import HostLogs, HostLogsArgs
from components.release import ReleaseBucket, ReleaseBucketArgs
from components.vault import Vault, VaultArgs

__all__ = ["ExecutionHost", "ExecutionHostArgs", "HostLogs", "HostLogsArgs", "ReleaseBucket", "ReleaseBucketArgs",
           "Vault", "VaultArgs"]
