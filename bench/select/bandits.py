"""Contextual bandit policies over the variants (arms) of a run.

Every round a device arrives; a policy sees one context vector per arm, z_{t,a} (features of the device, its user
and the variant on it: `simulate.features`), picks an arm, and observes the noisy QoE of that arm only.

The linear policies share one model, hybrid LinUCB's (Li, Chu, Langford, Schapire, "A Contextual-Bandit Approach
to Personalized News Article Recommendation", WWW 2010, Algorithm 2): reward = z^T beta + theta_{d,a}, a theta
shared by every device and arm plus, per (device, arm), an offset learned from that device's own feedback
(x_{t,a} = [1] in the paper's notation). Ridge priors: beta ~ ridge * I, each offset ~ offset_ridge. They differ
only in how they explore:
- `HybridLinUCB` ("linucb"): argmax of the mean + alpha * sqrt(s), s the paper's variance term;
- `HybridTS` ("thompson"): linear Thompson sampling (Agrawal & Goyal, ICML 2013) on the same posterior:
  beta ~ N(beta_hat, v^2 A0^-1), then offset_{d,a} | beta ~ N((b_a - B_a beta) / A_a, v^2 / A_a), exact
  because A0 is the Schur complement the algorithm maintains (beta's marginal precision);
- `HybridEpsGreedy` ("egreedy"): the mean, or a uniformly random arm with probability epsilon.
`NeuralUCB` ("neuralucb"): Zhou, Li, Gu, "Neural Contextual Bandits with UCB-based Exploration", ICML 2020, with
the diagonal approximation of Z of their experiments: one small MLP f(z) for all arms, trained every
`train_every` rounds (less often as data grows); U_a = f + nu * sqrt(sum_i g_i^2 / Z_i), g = grad_theta f,
Z = lambda + sum of the chosen arms' g^2. `RandomPolicy`, `FixedPolicy` (one arm per device decided beforehand:
the common model, the oracle, the device model's prior).
"""

from __future__ import annotations

import numpy as np

from bench.select import LEARNERS


class HybridLinUCB:
    """Hybrid LinUCB with a scalar arm-specific part: every per-(device, arm) matrix of Algorithm 2 is a number, so
    an update costs one k x k inverse of the shared system (k = context dimension)."""

    name = "linucb"

    def __init__(self, n_devices: int, n_arms: int, dim: int, alpha: float = 0.5, ridge: float = 1.0,
                 offset_ridge: float = 4.0) -> None:
        if alpha < 0 or ridge <= 0 or offset_ridge <= 0:
            raise ValueError(f"alpha must be >= 0, ridge and offset_ridge > 0; got {alpha}, {ridge}, {offset_ridge}")
        self.alpha = alpha
        self.A0 = ridge * np.eye(dim)
        self.A0_inv = np.eye(dim) / ridge
        self.b0 = np.zeros(dim)
        self.a = np.full((n_devices, n_arms), float(offset_ridge))  # A_a (1 x 1)
        self.B = np.zeros((n_devices, n_arms, dim))  # B_a (1 x k)
        self.b = np.zeros((n_devices, n_arms))  # b_a (1)

    @property
    def beta(self) -> np.ndarray:
        """The shared estimate A0^-1 b0."""
        return self.A0_inv @ self.b0

    def offsets(self, device: int, beta: np.ndarray | None = None) -> np.ndarray:
        """theta_{d,a} = A_a^-1 (b_a - B_a beta) for every arm of the device."""
        beta = self.beta if beta is None else beta
        return (self.b[device] - self.B[device] @ beta) / self.a[device]

    def mean(self, device: int, Z: np.ndarray) -> np.ndarray:
        return Z @ self.beta + self.offsets(device)

    def variance(self, device: int, Z: np.ndarray) -> np.ndarray:
        """s_{t,a} of Algorithm 2 with x = [1]."""
        ai, a, B = self.A0_inv, self.a[device], self.B[device]
        zA = Z @ ai
        s = (np.einsum("ki,ki->k", zA, Z) - 2 * np.einsum("ki,ki->k", zA, B) / a + 1 / a
             + np.einsum("ki,ki->k", B @ ai, B) / a ** 2)
        return np.maximum(s, 0.0)

    def ucb(self, device: int, Z: np.ndarray) -> np.ndarray:
        return self.mean(device, Z) + self.alpha * np.sqrt(self.variance(device, Z))

    def choose(self, device: int, Z: np.ndarray) -> int:
        return int(np.argmax(self.ucb(device, Z)))  # ties: the lowest arm index, so runs are reproducible

    def update(self, device: int, arm: int, z: np.ndarray, reward: float) -> None:
        a, B, b = self.a[device, arm], self.B[device, arm], self.b[device, arm]
        self.A0 += np.outer(B, B) / a
        self.b0 += B * b / a
        a, B, b = a + 1.0, B + z, b + reward
        self.A0 += np.outer(z, z) - np.outer(B, B) / a
        self.b0 += reward * z - B * b / a
        self.a[device, arm], self.B[device, arm], self.b[device, arm] = a, B, b
        self.A0_inv = np.linalg.inv(self.A0)


class HybridTS(HybridLinUCB):
    """Thompson sampling on the hybrid model's posterior, scaled by v."""

    name = "thompson"

    def __init__(self, n_devices: int, n_arms: int, dim: int, v: float = 0.25, seed: int = 0, **kw) -> None:
        super().__init__(n_devices, n_arms, dim, alpha=0.0, **kw)
        self.v = v
        self.rng = np.random.default_rng(seed)

    def choose(self, device: int, Z: np.ndarray) -> int:
        chol = np.linalg.cholesky(0.5 * (self.A0_inv + self.A0_inv.T))  # symmetric against rounding
        beta = self.beta + self.v * chol @ self.rng.standard_normal(len(self.b0))
        a = self.a[device]
        offsets = self.offsets(device, beta) + self.v * self.rng.standard_normal(len(a)) / np.sqrt(a)
        return int(np.argmax(Z @ beta + offsets))


class HybridEpsGreedy(HybridLinUCB):
    """The hybrid model's mean; a uniformly random arm with probability epsilon."""

    name = "egreedy"

    def __init__(self, n_devices: int, n_arms: int, dim: int, epsilon: float = 0.05, seed: int = 0, **kw) -> None:
        super().__init__(n_devices, n_arms, dim, alpha=0.0, **kw)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def choose(self, device: int, Z: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(Z)))
        return int(np.argmax(self.mean(device, Z)))


class RandomPolicy:
    name = "random"

    def __init__(self, n_arms: int, seed: int = 0) -> None:
        self.n_arms = n_arms
        self.rng = np.random.default_rng(seed)

    def choose(self, device: int, X: np.ndarray) -> int:
        return int(self.rng.integers(self.n_arms))

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        pass


class FixedPolicy:
    """One arm per device, decided beforehand: the common model, the per-device oracle, the catalog prior."""

    def __init__(self, name: str, arm_of_device: np.ndarray) -> None:
        self.name = name
        self.arm_of_device = np.asarray(arm_of_device, dtype=int)

    def choose(self, device: int, X: np.ndarray) -> int:
        return int(self.arm_of_device[device])

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        pass


class NeuralUCB:
    """NeuralUCB with a one-hidden-layer ReLU MLP on the context z_{t,a} (which carries the arm's one-hot) and a
    diagonal Z. One model for every device: unlike the hybrid linear policies it has no per-device part.

    The forward pass and the per-arm gradients (closed form for this net) run in numpy each round; torch trains
    the weights by Adam on every observation so far, every `train_every` rounds, warm-started."""

    name = "neuralucb"

    def __init__(self, n_arms: int, dim: int, hidden: int = 32, nu: float = 0.05, ridge: float = 1.0,
                 train_every: int = 50, steps: int = 25, batch: int = 512, lr: float = 1e-2, seed: int = 0) -> None:
        import torch

        self.torch = torch
        self.n_arms, self.dim, self.nu = n_arms, dim, nu
        self.train_every, self.steps, self.batch = train_every, steps, batch
        gen = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))
        with torch.no_grad():
            for p in self.net.parameters():  # seeded init, independent of torch's global RNG
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / np.sqrt(p.shape[-1]))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gen = gen
        self._sync()
        self.Z = np.full(self._n_params(), ridge)
        self.inputs = np.zeros((1024, dim), dtype=np.float32)  # grown by doubling
        self.rewards = np.zeros(1024, dtype=np.float32)
        self.n = 0

    def _n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _sync(self) -> None:
        w1, b1, w2, b2 = (p.detach().numpy().astype(np.float64) for p in self.net.parameters())
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2[0], float(b2[0])

    def forward_and_grads(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f(z) and d f / d(w1, b1, w2, b2) per row of Z, flattened in the net's parameter order."""
        pre = Z @ self.w1.T + self.b1
        h = np.maximum(pre, 0.0)
        f = h @ self.w2 + self.b2
        gate = (pre > 0) * self.w2  # d f / d pre
        g_w1 = gate[:, :, None] * Z[:, None, :]
        grads = np.hstack([g_w1.reshape(len(Z), -1), gate, h, np.ones((len(Z), 1))])
        return f, grads

    def ucb(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.forward_and_grads(X)
        return f + self.nu * np.sqrt((g * g / self.Z).sum(axis=1)), g

    def choose(self, device: int, X: np.ndarray) -> int:
        u, _ = self.ucb(X)
        return int(np.argmax(u))

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        z = x
        _, g = self.forward_and_grads(z[None])
        self.Z += g[0] ** 2
        if self.n == len(self.rewards):
            self.inputs = np.vstack([self.inputs, np.zeros_like(self.inputs)])
            self.rewards = np.concatenate([self.rewards, np.zeros_like(self.rewards)])
        self.inputs[self.n], self.rewards[self.n] = z, reward
        self.n += 1
        # every train_every rounds, then less often as the data grows (each fit then changes the net less)
        if self.n % max(self.train_every, self.n // 20 // self.train_every * self.train_every) == 0:
            self.train()

    def train(self) -> None:
        torch = self.torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a net this small only loses to thread start-up and contention
        try:
            self._train()
        finally:
            torch.set_num_threads(threads)

    def _train(self) -> None:
        torch = self.torch
        n = self.n
        Zs, r = torch.from_numpy(self.inputs[:n]), torch.from_numpy(self.rewards[:n])
        for _ in range(self.steps):
            idx = torch.randint(n, (min(self.batch, n),), generator=self.gen)
            loss = torch.mean((self.net(Zs[idx]).squeeze(-1) - r[idx]) ** 2)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self._sync()


def make(name: str, n_devices: int, n_arms: int, dim: int, *, seed: int = 0, alpha: float = 0.5,
         offset_ridge: float = 4.0):
    """A learning policy by name (the `--algo` values); `alpha` scales the exploration of every learner: LinUCB's
    alpha, Thompson's posterior scale v = alpha / 2, NeuralUCB's nu = alpha / 10."""
    if name == "linucb":
        return HybridLinUCB(n_devices, n_arms, dim, alpha=alpha, offset_ridge=offset_ridge)
    if name == "thompson":
        return HybridTS(n_devices, n_arms, dim, v=alpha / 2, seed=seed, offset_ridge=offset_ridge)
    if name == "egreedy":
        return HybridEpsGreedy(n_devices, n_arms, dim, seed=seed, offset_ridge=offset_ridge)
    if name == "neuralucb":
        return NeuralUCB(n_arms, dim, nu=alpha / 10, seed=seed)
    raise ValueError(f"--algo: unknown algorithm '{name}'; choose one of {', '.join(LEARNERS)}")
