"""A foraging swarm on a grid, behind the Gymnasium Env API. THE FILE TO MAKE FASTER.

The world is a GRID x GRID torus-free square of integer cells. You steer agent 0 (the
action: stay, north, east, south, west); the other N_AGENTS - 1 agents forage on their own.
Each step every other agent, in index order, scores the 9 moves around it (stay and the 8
neighbours): food under the cell is worth FOOD_VALUE, and every agent within RADIUS
(Chebyshev distance, positions as they were at the start of the step) costs one. It takes
the best move the rules allow (inside the grid, not onto an occupied cell; ties: the first
in MOVES order). An agent that lands on food eats it, and the food reappears at a random
free cell. Agent 0's reward: FOOD_VALUE per food it eats, minus its crowding.

Everything is integer and seeded through ``self.np_random``: the same seed and actions give
the same trajectory on every machine. The fixed harness checks exactly that.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GRID = 36  # side of the world, in cells
N_AGENTS = 64  # agent 0 is yours
N_FOOD = 40  # food items on the grid at any time
RADIUS = 3  # crowding radius (Chebyshev), in cells
FOOD_VALUE = 10  # score of a food item
MAX_STEPS = 100  # an episode is truncated after this many steps
MOVES = [(0, 0), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1)]
ACTIONS = [(0, 0), (0, -1), (1, 0), (0, 1), (-1, 0)]  # stay, north, east, south, west
OBS_SIZE = 7  # x, y, crowding, food eaten, dx and dy to the nearest food, step


class ForageEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 (the Gymnasium convention)

    def __init__(self) -> None:
        self.action_space = spaces.Discrete(len(ACTIONS))
        high = np.array([GRID, GRID, N_AGENTS, 10**6, GRID, GRID, MAX_STEPS], dtype=np.int64)
        self.observation_space = spaces.Box(-high, high, shape=(OBS_SIZE,), dtype=np.int64)
        self.agents: list[list[int]] = []
        self.food: list[list[int]] = []
        self.eaten = 0
        self.t = 0

    # -- helpers --------------------------------------------------------------------------
    def crowding(self, x: int, y: int, snapshot: list[list[int]], me: int) -> int:
        """Agents of ``snapshot`` (all but ``me``) within RADIUS of (x, y)."""
        n = 0
        for j in range(len(snapshot)):
            if j == me:
                continue
            ax, ay = snapshot[j]
            if abs(ax - x) <= RADIUS and abs(ay - y) <= RADIUS:
                n += 1
        return n

    def food_at(self, x: int, y: int) -> int:
        for i in range(len(self.food)):
            if self.food[i][0] == x and self.food[i][1] == y:
                return i
        return -1

    def occupied(self, x: int, y: int, me: int) -> bool:
        for j in range(len(self.agents)):
            if j != me and self.agents[j][0] == x and self.agents[j][1] == y:
                return True
        return False

    def free_cell(self) -> list[int]:
        while True:
            x, y = (int(v) for v in self.np_random.integers(0, GRID, size=2))
            if not self.occupied(x, y, -1) and self.food_at(x, y) < 0:
                return [x, y]

    def eat(self, who: int) -> bool:
        x, y = self.agents[who]
        i = self.food_at(x, y)
        if i < 0:
            return False
        self.food[i] = self.free_cell()
        return True

    def observe(self, snapshot: list[list[int]]) -> np.ndarray:
        x, y = self.agents[0]
        best = None
        for fx, fy in self.food:
            d = abs(fx - x) + abs(fy - y)
            if best is None or d < best[0]:
                best = (d, fx - x, fy - y)
        assert best is not None
        crowd = self.crowding(x, y, snapshot, 0)
        return np.array([x, y, crowd, self.eaten, best[1], best[2], self.t], dtype=np.int64)

    # -- the Env API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.agents, self.food, self.eaten, self.t = [], [], 0, 0
        for _ in range(N_AGENTS):
            self.agents.append(self.free_cell())
        for _ in range(N_FOOD):
            self.food.append(self.free_cell())
        return self.observe([a[:] for a in self.agents]), {}

    def step(self, action):
        snapshot = [a[:] for a in self.agents]
        dx, dy = ACTIONS[int(action)]
        x, y = self.agents[0][0] + dx, self.agents[0][1] + dy
        if 0 <= x < GRID and 0 <= y < GRID and not self.occupied(x, y, 0):
            self.agents[0] = [x, y]
        reward = 0
        if self.eat(0):
            self.eaten += 1
            reward += FOOD_VALUE
        for i in range(1, N_AGENTS):
            ax, ay = self.agents[i]
            scores = []
            for mx, my in MOVES:
                nx, ny = ax + mx, ay + my
                score = -self.crowding(nx, ny, snapshot, i)
                if self.food_at(nx, ny) >= 0:
                    score += FOOD_VALUE
                valid = 0 <= nx < GRID and 0 <= ny < GRID and not self.occupied(nx, ny, i)
                scores.append((score, valid, nx, ny))
            best = None
            for score, valid, nx, ny in scores:
                if valid and (best is None or score > best[0]):
                    best = (score, nx, ny)
            if best is not None:
                self.agents[i] = [best[1], best[2]]
            self.eat(i)
        self.t += 1
        obs = self.observe(snapshot)
        reward -= int(obs[2])
        terminated = self.eaten >= 5
        truncated = self.t >= MAX_STEPS
        return obs, reward, terminated, truncated, {}
