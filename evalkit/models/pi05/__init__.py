"""π₀.₅ (pi0.5) in plain PyTorch with numerical parity to openpi's JAX reference.

Modules: `config` (dimensions), `siglip` (vision tower), `gemma` (two-expert shared-attention transformer),
`model` (`Pi05Model`: prefix/suffix embedding, flow-matching sampler and loss), `jax_names` (orbax → our names),
`normalize` (openpi/lerobot state and action normalization), `tokenizer` (openpi's PaliGemma prompts),
`checkpoint/` (layouts, reading, validation, conversion, fingerprints), `hub` (downloads), `cache` (the one cache
root, `$EVALKIT_CACHE`), `cli` (`evalkit convert`, `evalkit make-tiny-checkpoint`).
Nothing heavy is imported here; import the submodules you need.
"""
