"""A small seeded game for the demo model, in 240x160 frames (the Game Boy Advance screen).

Runs on Debian's python3 with python3-pil only. Frames are drawn with filled rectangles alone (no
fonts, no anti-aliasing), so Debian's Pillow and the training venv's Pillow draw the same pixels.

Every screen is a 4x4 board of 60x40 tiles. Once the server has composed the 2x2 grid of the last
four frames (480x320) and resized it to the demo model's 96x96 input, each tile of a frame is one
12x12 patch of the vision tower: one image token per tile.

An episode walks through the five contexts of the default action schema:

  other       the title screen; `start` begins                            reasoning: title_screen
  navigation  the player (blue) walks to the goal (yellow) around walls (gray, casting a dark
              shadow on the edge of each tile beside them):
                toward the goal, horizontally first                          clear_path
                the horizontal way is walled: vertically toward the goal    wall_ahead
                both walled (or the only way): a free perpendicular step    detour
  dialogue    reaching the goal opens a text box; a red marker in its corner means more text:
                marker shown: `a`                                           advance_text
                last page: `b` closes it                                    close_text
  menu        move the cursor (white, left column) to the marked item (red, right column):
                `up` / `down`                                               move_cursor
                on the marked item: `a`                                     select_item
  battle      move the cursor (black, row 2) to the glowing option (green, row 3):
                `left` / `right`                                            choose_move
                on the glowing option: `a` wins the episode                 confirm

The right action is a function of the newest frame alone (`expert_action`). Wrong buttons waste a
step (walking into a wall, `a` on the wrong item) or move away; an episode fails when it runs out
of steps (`max_steps`, twice the shortest solution plus 4).
"""
import random

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 240, 160
COLS, ROWS = 4, 4
TILE_W, TILE_H = WIDTH // COLS, HEIGHT // ROWS
SHADOW_W, SHADOW_H = 10, 8  # a wall's shadow on the tiles beside it (2 pixels of the model's 12)

BUTTONS = ["a", "b", "start", "select", "up", "down", "left", "right", "l", "r"]
CONTEXTS = ["navigation", "battle", "menu", "dialogue", "other"]
STAGES = ["title", "map", "dialogue", "menu", "battle"]
CONTEXT_OF = {"title": "other", "map": "navigation", "dialogue": "dialogue", "menu": "menu",
              "battle": "battle"}
MOVES = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}

# The instruction the agent sends with every step (the demo model was trained on it).
INSTRUCTION = "Play the game: choose the button for the newest frame (bottom right)."


def tile_box(col, row, inset=0):
    x0, y0 = col * TILE_W + inset, row * TILE_H + inset
    return [x0, y0, x0 + TILE_W - 1 - inset, y0 + TILE_H - 1 - inset]


class Game:
    """One episode. `step(button)` applies a button; `frame()` draws the current screen."""

    def __init__(self, seed, start_stage="title"):
        self.rng = random.Random(seed)
        self.stage = start_stage
        self.tick = 0
        self.done = False
        self._new_map()
        self.pages = self.rng.randint(2, 4)
        self.page = 0
        self.lines = [[self.rng.randint(60, 200) for _ in range(2)] for _ in range(self.pages)]
        self.menu_cursor = self.rng.randrange(ROWS)
        self.menu_target = self.rng.randrange(ROWS)
        self.battle_cursor = self.rng.randrange(COLS)
        self.battle_target = self.rng.randrange(COLS)
        self.enemy = self.rng.randrange(3)
        self.max_steps = 2 * self.shortest_solution() + 4
        self.steps = 0

    # ---- the map -------------------------------------------------------------------------------
    def _new_map(self):
        """Walls, player and goal such that the expert reaches the goal in at most 10 moves."""
        while True:
            cells = [(c, r) for r in range(ROWS) for c in range(COLS)]
            self.rng.shuffle(cells)
            n_walls = self.rng.randint(1, 5)
            self.walls = set(cells[:n_walls])
            self.player, self.goal = cells[n_walls], cells[n_walls + 1]
            if self._expert_moves(self.player) is not None:
                return

    def _free(self, cell):
        c, r = cell
        return 0 <= c < COLS and 0 <= r < ROWS and cell not in self.walls

    def nav_choice(self, player):
        """(button, reasoning) of the navigation rule from `player` (see the module docstring)."""
        dx, dy = self.goal[0] - player[0], self.goal[1] - player[1]
        h = "right" if dx > 0 else "left" if dx < 0 else None
        v = "down" if dy > 0 else "up" if dy < 0 else None
        first, second = (h, v) if h else (v, None)

        def free(b):
            return self._free((player[0] + MOVES[b][0], player[1] + MOVES[b][1]))

        if free(first):
            return first, "clear_path"
        if second and free(second):
            return second, "wall_ahead"
        side = ("down", "up") if first in ("left", "right") else ("right", "left")
        for b in side + ("left", "right", "up", "down"):
            if free(b):
                return b, "detour"
        return first, "wall_ahead"  # boxed in: never generated (`_new_map` rejects it)

    def _expert_moves(self, start):
        pos, seen = start, set()
        for n in range(11):
            if pos == self.goal:
                return n
            if pos in seen:
                return None
            seen.add(pos)
            b, _ = self.nav_choice(pos)
            nxt = (pos[0] + MOVES[b][0], pos[1] + MOVES[b][1])
            if not self._free(nxt):
                return None
            pos = nxt
        return None

    def shortest_solution(self):
        """Steps the expert needs from here to win."""
        order = STAGES.index(self.stage)
        n = 0
        if order <= 0:
            n += 1
        if order <= 1:
            n += self._expert_moves(self.player)
        if order <= 2:
            n += self.pages - (self.page if order == 2 else 0)
        if order <= 3:
            n += abs(self.menu_cursor - self.menu_target) + 1
        return n + abs(self.battle_cursor - self.battle_target) + 1

    # ---- rules ---------------------------------------------------------------------------------
    def expert_action(self):
        """The right action for the current screen: {"button", "reasoning", "context"}."""
        ctx = CONTEXT_OF[self.stage]
        if self.stage == "title":
            b, why = "start", "title_screen"
        elif self.stage == "map":
            b, why = self.nav_choice(self.player)
        elif self.stage == "dialogue":
            b, why = ("a", "advance_text") if self.page < self.pages - 1 else ("b", "close_text")
        elif self.stage == "menu":
            d = self.menu_target - self.menu_cursor
            b, why = ("a", "select_item") if d == 0 else ("down" if d > 0 else "up", "move_cursor")
        else:
            d = self.battle_target - self.battle_cursor
            b, why = ("a", "confirm") if d == 0 else ("right" if d > 0 else "left", "choose_move")
        return {"button": b, "reasoning": why, "context": ctx}

    def step(self, button):
        """Applies one button; returns True once the episode is won."""
        if self.done:
            return True
        self.steps += 1
        self.tick += 1
        if self.stage == "title":
            if button == "start":
                self.stage = "map"
        elif self.stage == "map":
            if button in MOVES:
                nxt = (self.player[0] + MOVES[button][0], self.player[1] + MOVES[button][1])
                if self._free(nxt):
                    self.player = nxt
                if self.player == self.goal:
                    self.stage = "dialogue"
        elif self.stage == "dialogue":
            if button == "a" and self.page < self.pages - 1:
                self.page += 1
            elif button == "b" and self.page == self.pages - 1:
                self.stage = "menu"
        elif self.stage == "menu":
            if button == "up":
                self.menu_cursor = max(0, self.menu_cursor - 1)
            elif button == "down":
                self.menu_cursor = min(ROWS - 1, self.menu_cursor + 1)
            elif button == "a" and self.menu_cursor == self.menu_target:
                self.stage = "battle"
        else:
            if button == "left":
                self.battle_cursor = max(0, self.battle_cursor - 1)
            elif button == "right":
                self.battle_cursor = min(COLS - 1, self.battle_cursor + 1)
            elif button == "a" and self.battle_cursor == self.battle_target:
                self.done = True
        return self.done

    @property
    def out_of_steps(self):
        return not self.done and self.steps >= self.max_steps

    # ---- drawing -------------------------------------------------------------------------------
    def frame(self):
        img = Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 0))
        d = ImageDraw.Draw(img)
        getattr(self, "_draw_" + self.stage)(d)
        return img

    def _draw_title(self, d):
        d.rectangle([0, 0, WIDTH - 1, HEIGHT - 1], fill=(48, 16, 72))
        d.rectangle([20, 30, WIDTH - 21, 69], fill=(240, 160, 40))  # the logo band
        d.rectangle([30, 40, WIDTH - 31, 59], fill=(120, 40, 20))
        if self.tick % 2 == 0:  # "PRESS START" blinks
            d.rectangle([80, 110, 159, 121], fill=(250, 250, 250))

    def _draw_board(self, d):
        # Grass shaded by position (redder to the east, bluer to the south), like terrain.
        for r in range(ROWS):
            for c in range(COLS):
                d.rectangle(tile_box(c, r), fill=(40 + 20 * c, 150 + 8 * ((c + r) % 2), 40 + 20 * r))
        for w in self.walls:
            d.rectangle(tile_box(*w), fill=(110, 110, 110))
            d.rectangle(tile_box(*w, inset=6), fill=(90, 90, 90))
        # Walls cast a dark shadow over the near edge of each free tile beside them, so a tile
        # shows by itself which of its neighbours are walls: the demo model sees each tile as one
        # 12x12 patch, and a wall next to the player is then visible in the player's own patch.
        for (c, r) in self.walls:
            for dc, dr in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                n = (c + dc, r + dr)
                if not self._free(n):
                    continue
                x0, y0, x1, y1 = tile_box(*n)
                edge = {(1, 0): [x0, y0, x0 + SHADOW_W - 1, y1],
                        (-1, 0): [x1 - SHADOW_W + 1, y0, x1, y1],
                        (0, 1): [x0, y0, x1, y0 + SHADOW_H - 1],
                        (0, -1): [x0, y1 - SHADOW_H + 1, x1, y1]}
                d.rectangle(edge[(dc, dr)], fill=(20, 40, 20))
        d.rectangle(tile_box(*self.goal, inset=6), fill=(250, 220, 40))
        d.rectangle(tile_box(*self.player, inset=10), fill=(40, 70, 230))

    def _draw_map(self, d):
        self._draw_board(d)

    def _draw_dialogue(self, d):
        self._draw_board(d)
        d.rectangle([4, 84, WIDTH - 5, HEIGHT - 5], fill=(245, 245, 235))
        d.rectangle([8, 88, WIDTH - 9, HEIGHT - 9], outline=(30, 30, 30), width=2)
        for i, length in enumerate(self.lines[self.page]):
            d.rectangle([16, 98 + 18 * i, 16 + min(length, 160), 107 + 18 * i], fill=(40, 40, 40))
        if self.page < self.pages - 1:  # more text: a red marker filling the box's last tile
            d.rectangle([WIDTH - 56, HEIGHT - 36, WIDTH - 12, HEIGHT - 10], fill=(220, 30, 30))

    def _draw_menu(self, d):
        d.rectangle([0, 0, WIDTH - 1, HEIGHT - 1], fill=(20, 30, 110))
        for r in range(ROWS):
            x0, y0, x1, y1 = tile_box(1, r, inset=8)
            d.rectangle([x0, y0, x1 + TILE_W, y1], fill=(200, 200, 215))
        d.rectangle(tile_box(0, self.menu_cursor, inset=10), fill=(255, 255, 255))
        d.rectangle(tile_box(3, self.menu_target, inset=10), fill=(230, 40, 40))

    def _draw_battle(self, d):
        d.rectangle([0, 0, WIDTH - 1, 79], fill=(140, 200, 240))
        d.rectangle([0, 80, WIDTH - 1, HEIGHT - 1], fill=(230, 210, 160))
        colors = [(200, 40, 40), (150, 60, 180), (60, 60, 60)]
        d.rectangle([150, 10, 209, 69], fill=colors[self.enemy])  # the enemy
        d.rectangle([20, 20, 99, 27], fill=(40, 180, 40))  # its health bar
        for c in range(COLS):
            fill = (40, 200, 80) if c == self.battle_target else (120, 100, 70)
            d.rectangle(tile_box(c, 3, inset=6), fill=fill)
        d.rectangle(tile_box(self.battle_cursor, 2, inset=12), fill=(0, 0, 0))


def grid(frames):
    """The 2x2 grid the server composes from the last four frames, oldest first (t0 t1 / t2 t3)."""
    out = Image.new("RGB", (2 * WIDTH, 2 * HEIGHT), (0, 0, 0))
    for i, f in enumerate(frames):
        out.paste(f, ((i % 2) * WIDTH, (i // 2) * HEIGHT))
    return out


def last_four(history):
    """The four frames the agent sends: the newest four, the oldest repeated at an episode's start
    (so the newest frame is always bottom right)."""
    h = history[-4:]
    return [h[0]] * (4 - len(h)) + h


def main():
    """Writes the four frames the agent would send after some expert steps (for vlmserve-client)."""
    import argparse
    import json
    import os
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="expert steps played before the frames")
    ap.add_argument("--out", required=True, help="directory for t0.png … t3.png")
    args = ap.parse_args()
    g, history = Game(args.seed), []
    for _ in range(args.steps + 1):
        history.append(g.frame())
        if len(history) <= args.steps:
            g.step(g.expert_action()["button"])
    os.makedirs(args.out, exist_ok=True)
    for i, f in enumerate(last_four(history)):
        f.save(os.path.join(args.out, f"t{i}.png"))
    print(json.dumps(g.expert_action()))


if __name__ == "__main__":
    main()
