"""Networks of the reference implementation: twin Q (as a vmapped ensemble), V, Gaussian policy.

Initialisation matches the reference where it matters:
- Q and V use PyTorch's `nn.Linear` default: kaiming_uniform(a=sqrt(5)) weights, i.e.
  U(+-1/sqrt(fan_in)), and biases U(+-1/sqrt(fan_in)).
- The policy uses Xavier-uniform weights and zero biases, and a state-independent log-std
  initialised to 0 and clipped to [-5, 2]. The mean is tanh-squashed; the distribution is not.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

# U(+-1/sqrt(fan_in)) == variance_scaling(1/3, fan_in, uniform): PyTorch's Linear weight default.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """`x @ kernel + bias` with a hand-written backward pass that emits the kernel gradient as
    `x^T g`, already in the kernel's (in, out) layout.

    Autodiff writes it as `(g^T x)^T`; XLA:CPU keeps that transpose and fuses it into the Adam
    update loops, where the strided reads cost about as much as the matmul itself (docs/performance.md).
    Same math, same forward; gradients agree to float rounding.
    """
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ()))) + bias


def _dense_fwd(x, kernel, bias):
    return dense(x, kernel, bias), (x, kernel)


def _dense_bwd(residuals, g):
    x, kernel = residuals
    lead = tuple(range(x.ndim - 1))
    dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    if kernel.shape[1] < kernel.shape[0]:
        # Narrow outputs (policy head, 256 -> 8): XLA:CPU's dot for x^T g is ~7x slower than g^T x
        # here; the barrier keeps it from folding the transpose back into the dot.
        dkernel = lax.optimization_barrier(lax.dot_general(g, x, ((lead, lead), ((), ())))).T
    else:
        dkernel = lax.dot_general(x, g, ((lead, lead), ((), ())))
    return dx, dkernel, g.sum(lead)


dense.defvjp(_dense_fwd, _dense_bwd)


class Dense(nn.Module):
    """`flax.linen.Dense` (same parameter names, shapes and init streams) computed with `dense`."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return dense(x, kernel, bias)


class TorchDense(nn.Module):
    """Dense layer with PyTorch's default init; the bias bound needs the fan-in, hence a custom module."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bound = 1.0 / jnp.sqrt(fan_in)
        kernel = self.param("kernel", torch_kernel_init, (fan_in, self.features))
        bias = self.param(
            "bias", lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound), (self.features,)
        )
        return dense(x, kernel, bias)


class MLP(nn.Module):
    """ReLU MLP; `torch_init` selects PyTorch-default init (critics) vs Xavier/zero (policy trunk)."""

    hidden_dims: Sequence[int]
    activate_final: bool = False
    torch_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_dims):
            if self.torch_init:
                x = TorchDense(size)(x)
            else:
                x = Dense(size)(x)  # Xavier-uniform weights, zero biases
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                x = nn.relu(x)
        return x


class QNet(nn.Module):
    hidden_dims: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, act], axis=-1)
        return MLP((*self.hidden_dims, 1))(x).squeeze(-1)


class Critic(nn.Module):
    """Twin Q as one vmapped module: params carry a leading ensemble axis; output (num_qs, ...)."""

    hidden_dims: Sequence[int]
    num_qs: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            QNet,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        return ensemble(self.hidden_dims)(obs, act)


class ValueNet(nn.Module):
    hidden_dims: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP((*self.hidden_dims, 1))(obs).squeeze(-1)


class GaussianPolicy(nn.Module):
    """Returns (mean, log_std) of an unsquashed diagonal Gaussian with tanh-bounded mean."""

    hidden_dims: Sequence[int]
    action_dim: int
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_dims, activate_final=True, torch_init=False)(obs)
        pre = Dense(self.action_dim)(h)
        low, high = jnp.asarray(self.action_low), jnp.asarray(self.action_high)
        mean = (high + low) / 2 + (high - low) / 2 * jnp.tanh(pre)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return mean, jnp.broadcast_to(log_std, mean.shape)


# --- Distribution helpers (pure functions on (mean, log_std)) ---


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """Diagonal Gaussian log-density summed over the action dimension."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Unclipped sample, as in the reference (environments clip if they need to)."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
