"""DINOv2 ViTs (Oquab et al. 2023) as timm builds them: ViT-S/14 and ViT-B/14, with and
without four register tokens (Darcet et al. 2024). The patch tokens, after the final norm,
come out as a (B, C, H/14, W/14) map, so feature-map aggregators (GeM, MixVPR, SALAD, BoQ)
pool them as they pool a CNN's; with ``return_token`` (set for aggregators that also read
the class token, SALAD) the backbone returns (map, class token). Inputs should be multiples
of 14 pixels (SALAD and BoQ use 322 x 322); a remainder is dropped by the patch embedding."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.models.registry import BACKBONES
from edgevpr.models.weights import load_into, load_state_dict_file, no_pretrained

TIMM_NAMES = {
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vits14_reg": "vit_small_patch14_reg4_dinov2",
    "dinov2_vitb14_reg": "vit_base_patch14_reg4_dinov2",
}
PATCH = 14


@dataclass
class DINOv2Params:
    final_norm: bool = True  # the ViT's last LayerNorm on the tokens (SALAD uses it; BoQ does not)


class DINOv2(nn.Module):
    cls_token = True

    def __init__(self, timm_name: str, final_norm: bool = True):
        super().__init__()
        import timm

        self.net = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        self.out_channels = self.net.embed_dim
        self.final_norm = final_norm
        self.return_token = False

    def tokens(self, images):
        if self.final_norm:
            return self.net.forward_features(images)
        net = self.net  # forward_features without its last norm
        return net.blocks(net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(images)))))

    def fix_input_size(self, height: int, width: int) -> None:
        """Resample the position embeddings once for one input size, for export (as ``vit``)."""
        self.net.set_input_size(img_size=(height - height % PATCH, width - width % PATCH))
        self.net.dynamic_img_size = False
        self.net.patch_embed.dynamic_img_size = False
        self.net.patch_embed.flatten = True

    def forward(self, images):
        images = images[
            ..., : images.shape[-2] - images.shape[-2] % PATCH, : images.shape[-1] - images.shape[-1] % PATCH
        ]
        height, width = images.shape[-2] // PATCH, images.shape[-1] // PATCH
        tokens = self.tokens(images)  # (B, prefix + h * w, C)
        patches = tokens[:, self.net.num_prefix_tokens :]
        feature_map = patches.transpose(1, 2).reshape(tokens.shape[0], self.out_channels, height, width)
        return (feature_map, tokens[:, 0]) if self.return_token else feature_map


def _dinov2(name: str, config, params: DINOv2Params):
    net = DINOv2(TIMM_NAMES[name], params.final_norm)
    if config.weights is not None:
        load_into(net.net, load_state_dict_file(config.weights), config.weights)
    elif config.pretrained:
        raise ConfigError(no_pretrained(name, "DINOv2 weights are on model hubs, unreachable offline; give --weights"))
    return net


BACKBONES.register("dinov2_vits14", params=DINOv2Params)(partial(_dinov2, "dinov2_vits14"))
BACKBONES.register("dinov2_vitb14", params=DINOv2Params)(partial(_dinov2, "dinov2_vitb14"))
BACKBONES.register("dinov2_vits14_reg", params=DINOv2Params)(partial(_dinov2, "dinov2_vits14_reg"))
BACKBONES.register("dinov2_vitb14_reg", params=DINOv2Params)(partial(_dinov2, "dinov2_vitb14_reg"))
