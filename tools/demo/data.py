"""Examples for the demo model: the game's frames as the server composes them, and the expert's
action as JSON text in the default action schema's format.

An example is what the agent loop (examples/agent/agent.py) sends at one step: the last four
frames (the oldest repeated at an episode's start) composed into the 2x2 grid, the fixed
instruction, and the expert's action for the newest frame. Episodes are played by the expert with
a share of random buttons (`explore`), so histories include wasted and wrong steps as they do when
a model plays; buttons are then balanced by subsampling.
"""
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "agent"))
import game  # noqa: E402

IMAGE_SIZE = 96
USED_BUTTONS = ["a", "b", "start", "up", "down", "left", "right"]


def action_text(action):
    """The default schema's compact JSON (docs/actions.md): keys in order, one space after : and ,."""
    return json.dumps({k: action[k] for k in ("button", "reasoning", "context")})


def episode_steps(seed, explore, rng):
    """[(the four frames the agent sends, the expert's action)] for every step of one episode."""
    g = game.Game(seed)
    history, out = [], []
    while not g.done and g.steps < 40:
        history.append(g.frame())
        action = g.expert_action()
        out.append((game.last_four(history), action))
        g.step(rng.choice(game.BUTTONS) if rng.random() < explore else action["button"])
    return out


# The reasons each button is pressed for (detour is rare and only counts toward its button).
REASONS = {"a": ["advance_text", "select_item", "confirm"], "b": ["close_text"],
           "start": ["title_screen"], "up": ["clear_path", "wall_ahead", "move_cursor"],
           "down": ["clear_path", "wall_ahead", "move_cursor"], "left": ["clear_path", "choose_move"],
           "right": ["clear_path", "choose_move"]}

# The same, for one context's steps alone (detour again only counts toward its button).
CONTEXT_REASONS = {"navigation": {"up": ["clear_path", "wall_ahead"],
                                  "down": ["clear_path", "wall_ahead"],
                                  "left": ["clear_path"], "right": ["clear_path"]}}


def make_examples(n, first_seed, explore=0.25, balance=True, rng_seed=0, context=None):
    """n examples from episodes with seeds first_seed, first_seed + 1, ...: (uint8 [n, S, S, 3]
    pictures resized as Gemma3ImageProcessorPil does (Pillow BILINEAR), action texts, actions,
    the next unused seed). With `balance`, each button gets n / 7 examples, shared equally by the
    reasons it is pressed for (so rare rules such as wall_ahead are learned too). With `context`
    (e.g. "navigation"), only that context's steps, balanced over the buttons and reasons it has."""
    from PIL import Image
    rng = random.Random(rng_seed)
    reasons = REASONS if context is None else CONTEXT_REASONS[context]
    cap = n // len(reasons) + 1
    counts = {}
    pixels = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    texts, actions = [], []
    seed = first_seed
    while len(texts) < n:
        for frames, action in episode_steps(seed, explore, rng):
            b, why = action["button"], action["reasoning"]
            if context is not None and action["context"] != context:
                continue
            if balance:
                if counts.get(b, 0) >= cap:
                    continue
                if why in reasons[b] and counts.get((b, why), 0) >= -(-cap // len(reasons[b])):
                    continue
            if len(texts) == n:
                break
            counts[b] = counts.get(b, 0) + 1
            counts[(b, why)] = counts.get((b, why), 0) + 1
            grid = game.grid(frames)
            pixels[len(texts)] = np.asarray(grid.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
            texts.append(action_text(action))
            actions.append(action)
        seed += 1
    return pixels, texts, actions, seed
