"""π₀.₅ (pi0.5) in plain PyTorch with numerical parity to openpi's JAX reference.

Modules: `config` (dimensions), `siglip` (vision tower), `gemma` (two-expert shared-attention transformer),
`model` (`Pi05Model`: prefix/suffix embedding, flow-matching sampler and loss), `jax_names` (orbax → our names).
Nothing heavy is imported here; import the submodules you need.
"""
