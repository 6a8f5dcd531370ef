"""Model parallel: the class centers partitioned across the ranks of a torch.distributed group
(DESIGN §3), with only O(B) and O(B·D) traffic between them."""

from .distributed import ShardedMarginCCSHead

__all__ = ["ShardedMarginCCSHead"]
