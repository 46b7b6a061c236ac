"""Learnable prompt and time conditioning of the SD UNet (method.md §2.4)."""
import torch
import torch.nn as nn
from torch import Tensor


class PromptTimeConditioning(nn.Module):
    """Gated learnable prompt (cross-attention context) and gated time-embedding offset.

    Reference: ``ClipFeatureProject`` with ``learnable_cond_prompt=True``,
    ``learnable_cond_time=True`` (method.md §2.4)::

        context = tanh(alpha_uncond) ⊙ e_"" + tanh(alpha_cond) ⊙ prompt      (1, L, D)
        offset  = tanh(alpha_time) ⊙ time_embed                             (1, T)

    ``e_""`` is the frozen CLIP encoding of the empty prompt, kept as a persistent buffer so
    checkpoints carry it. ``offset`` is added to the output of ``unet.time_embedding``; it is
    exactly zero at initialisation because ``alpha_time`` starts at 0.

    It is a module of its own because the UDA segmentor keeps an EMA copy of it for the teacher
    (method.md §1); :class:`StableDiffusionBackbone` owns the student's copy.

    Args:
        empty_prompt_embedding (Tensor): ``e_""``, shape (1, L, D), e.g. (1, 77, 768) for SD-1.x.
        time_embed_dim (int): Width ``T`` of the UNet's time embedding (1280 for SD-1.x).
    """

    def __init__(self, empty_prompt_embedding: Tensor, time_embed_dim: int) -> None:
        super().__init__()
        if empty_prompt_embedding.dim() != 3 or empty_prompt_embedding.shape[0] != 1:
            raise ValueError('empty_prompt_embedding must have shape (1, L, D), got '
                             f'{tuple(empty_prompt_embedding.shape)}.')
        shape = tuple(empty_prompt_embedding.shape)
        self.register_buffer('empty_prompt_embedding',
                             empty_prompt_embedding.detach().clone().float(), persistent=True)
        self.prompt = nn.Parameter(torch.empty(shape))
        self.alpha_cond = nn.Parameter(torch.empty(shape))
        self.alpha_uncond = nn.Parameter(torch.empty(shape))
        self.time_embed = nn.Parameter(torch.empty(1, time_embed_dim))
        self.alpha_time = nn.Parameter(torch.empty(time_embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the reference does (method.md §2.4).

        ``prompt`` and ``time_embed``: truncated normal, std 0.02; ``alpha_cond`` and
        ``alpha_uncond``: U(0, 1); ``alpha_time``: 0.
        """
        nn.init.trunc_normal_(self.prompt, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        nn.init.uniform_(self.alpha_cond, 0.0, 1.0)
        nn.init.uniform_(self.alpha_uncond, 0.0, 1.0)
        nn.init.zeros_(self.alpha_time)

    def context(self, batch_size: int) -> Tensor:
        """Cross-attention context for every cross-attention layer of the UNet.

        Args:
            batch_size (int): Number of images ``N``.

        Returns:
            Tensor: (N, L, D), the same context for every image.
        """
        ctx = (torch.tanh(self.alpha_uncond) * self.empty_prompt_embedding +
               torch.tanh(self.alpha_cond) * self.prompt)
        return ctx.expand(batch_size, -1, -1)

    def time_offset(self) -> Tensor:
        """Offset added to the output of ``unet.time_embedding``.

        Returns:
            Tensor: (1, T); all zeros at initialisation.
        """
        return torch.tanh(self.alpha_time) * self.time_embed
