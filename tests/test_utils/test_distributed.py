"""Process-group helpers of madm.utils.distributed."""
import torch.distributed as dist

from madm.utils.distributed import close_distributed


def test_close_distributed_destroys_the_group_and_is_a_no_op_without_one(tmp_path):
    close_distributed()  # no group: nothing to do, no error
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    try:
        assert dist.is_initialized()
        close_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    close_distributed()
