"""Contextual bandit policies over the variants (arms) of a run.

Every round a device arrives; a policy sees one context vector per arm, x_{t,a} (features of the device, its user
and the variant on it: `simulate.features`), picks an arm, and observes the noisy QoE of that arm only.

- `LinUCB`: disjoint LinUCB, Li, Chu, Langford, Schapire, "A Contextual-Bandit Approach to Personalized News
  Article Recommendation", WWW 2010, Algorithm 1: per arm A_a = lambda*I + sum x x^T, b_a = sum r x,
  theta_a = A_a^-1 b_a, pick argmax theta_a^T x + alpha * sqrt(x^T A_a^-1 x).
- `LinTS`: linear Thompson sampling, Agrawal & Goyal, ICML 2013: theta_a ~ N(theta_a_hat, v^2 A_a^-1).
- `EpsGreedy`: the same ridge estimates, a uniformly random arm with probability epsilon.
- `NeuralUCB`: Zhou, Li, Gu, "Neural Contextual Bandits with UCB-based Exploration", ICML 2020, with the diagonal
  approximation of Z their experiments use: one small MLP f(x, onehot(a)) for all arms, trained every
  `train_every` rounds; U_a = f + nu * sqrt(sum_i g_i^2 / Z_i), g = grad_theta f, Z = lambda + sum of chosen g^2.
- `RandomPolicy`, `FixedPolicy` (one arm per device: the common model, the oracle, the catalog-model prior).
"""

from __future__ import annotations

import numpy as np


class LinUCB:
    """Disjoint LinUCB: one ridge regression per arm; A^-1 kept up to date by Sherman-Morrison."""

    name = "linucb"

    def __init__(self, n_arms: int, dim: int, alpha: float = 0.5, ridge: float = 1.0) -> None:
        if alpha < 0 or ridge <= 0:
            raise ValueError(f"alpha must be >= 0 and ridge > 0, got alpha={alpha}, ridge={ridge}")
        self.alpha, self.ridge = alpha, ridge
        self.A = np.repeat(ridge * np.eye(dim)[None], n_arms, axis=0)
        self.A_inv = np.repeat(np.eye(dim)[None] / ridge, n_arms, axis=0)
        self.b = np.zeros((n_arms, dim))

    @property
    def theta(self) -> np.ndarray:
        """(arms, dim): the ridge estimates A_a^-1 b_a."""
        return np.einsum("kij,kj->ki", self.A_inv, self.b)

    def mean(self, X: np.ndarray) -> np.ndarray:
        return np.einsum("ki,ki->k", self.theta, X)

    def width(self, X: np.ndarray) -> np.ndarray:
        """sqrt(x_a^T A_a^-1 x_a) per arm."""
        return np.sqrt(np.maximum(np.einsum("ki,kij,kj->k", X, self.A_inv, X), 0.0))

    def ucb(self, X: np.ndarray) -> np.ndarray:
        return self.mean(X) + self.alpha * self.width(X)

    def choose(self, device: int, X: np.ndarray) -> int:
        return int(np.argmax(self.ucb(X)))  # ties: the lowest arm index, so runs are reproducible

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        self.A[arm] += np.outer(x, x)
        self.b[arm] += reward * x
        ai = self.A_inv[arm]
        u = ai @ x
        self.A_inv[arm] = ai - np.outer(u, u) / (1.0 + x @ u)


class EpsGreedy(LinUCB):
    """Ridge estimates per arm; explore a uniformly random arm with probability epsilon."""

    name = "egreedy"

    def __init__(self, n_arms: int, dim: int, epsilon: float = 0.05, ridge: float = 1.0, seed: int = 0) -> None:
        super().__init__(n_arms, dim, alpha=0.0, ridge=ridge)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def choose(self, device: int, X: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(X)))
        return int(np.argmax(self.mean(X)))


class LinTS(LinUCB):
    """Linear Thompson sampling: a sample of each arm's posterior, v^2 A_a^-1 around the ridge estimate."""

    name = "thompson"

    def __init__(self, n_arms: int, dim: int, v: float = 0.25, ridge: float = 1.0, seed: int = 0) -> None:
        super().__init__(n_arms, dim, alpha=0.0, ridge=ridge)
        self.v = v
        self.rng = np.random.default_rng(seed)
        self._chol = np.linalg.cholesky(self.A_inv)

    def choose(self, device: int, X: np.ndarray) -> int:
        z = self.rng.standard_normal(self.b.shape)
        sample = self.theta + self.v * np.einsum("kij,kj->ki", self._chol, z)
        return int(np.argmax(np.einsum("ki,ki->k", sample, X)))

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        super().update(device, arm, x, reward)
        a_inv = 0.5 * (self.A_inv[arm] + self.A_inv[arm].T)  # keep it symmetric against rounding
        self._chol[arm] = np.linalg.cholesky(a_inv + 1e-12 * np.eye(len(x)))


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
    """NeuralUCB with a one-hidden-layer ReLU MLP on [x, onehot(arm)] and a diagonal Z.

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
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + n_arms, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))
        with torch.no_grad():
            for p in self.net.parameters():  # seeded init, independent of torch's global RNG
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / np.sqrt(p.shape[-1]))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gen = gen
        self._sync()
        self.Z = np.full(self._n_params(), ridge)
        self.inputs = np.zeros((1024, dim + n_arms), dtype=np.float32)  # grown by doubling
        self.rewards = np.zeros(1024, dtype=np.float32)
        self.n = 0

    def _n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _sync(self) -> None:
        w1, b1, w2, b2 = (p.detach().numpy().astype(np.float64) for p in self.net.parameters())
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2[0], float(b2[0])

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([X, np.eye(self.n_arms)[: len(X)]])

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
        f, g = self.forward_and_grads(self._inputs(X))
        return f + self.nu * np.sqrt((g * g / self.Z).sum(axis=1)), g

    def choose(self, device: int, X: np.ndarray) -> int:
        u, _ = self.ucb(X)
        return int(np.argmax(u))

    def update(self, device: int, arm: int, x: np.ndarray, reward: float) -> None:
        z = np.concatenate([x, np.eye(self.n_arms)[arm]])
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


LEARNERS = ("linucb", "neuralucb", "thompson", "egreedy")


def make(name: str, n_arms: int, dim: int, *, seed: int = 0, alpha: float = 0.5):
    """A learning policy by name (the `--algo` values); `alpha` scales the exploration of every learner: LinUCB's
    alpha, Thompson's posterior scale v = alpha / 2, NeuralUCB's nu = alpha / 10."""
    if name == "linucb":
        return LinUCB(n_arms, dim, alpha=alpha)
    if name == "thompson":
        return LinTS(n_arms, dim, v=alpha / 2, seed=seed)
    if name == "egreedy":
        return EpsGreedy(n_arms, dim, seed=seed)
    if name == "neuralucb":
        return NeuralUCB(n_arms, dim, nu=alpha / 10, seed=seed)
    raise ValueError(f"--algo: unknown algorithm '{name}'; choose one of {', '.join(LEARNERS)}")
