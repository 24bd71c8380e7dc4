"""Word pools and sentence templates for the two generation modes.

`original` keeps the vocabulary and templates of the released facebook bAbI v1.2 so that the generated
data is a stand-in for bAbI-Original; `synthetic` widens every pool (names, places, objects at least 5x)
and adds paraphrases, which is what the bAbI-Synthetic finding attributes its gains to. Only words live
here: the world simulation and the questions asked are in `world.py` and the task modules.
"""

from __future__ import annotations

import dataclasses
import random

MODES = ("original", "synthetic")


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Everything a generator may say. Lists are sampled from; templates use `str.format` fields."""

  mode: str
  male: tuple[str, ...]
  female: tuple[str, ...]
  rooms: tuple[str, ...]          # locations of the house tasks (1-3, 5-9, 11-13, 19, 20)
  outdoor: tuple[str, ...]        # extra locations of tasks 10 and 14
  objects: tuple[str, ...]        # movable objects
  animals: tuple[tuple[str, str], ...]   # (singular, plural), task 15
  species: tuple[str, ...]        # task 16
  colors: tuple[str, ...]         # task 16
  shapes: tuple[str, ...]         # task 17
  shape_colors: tuple[str, ...]   # task 17
  sizes: tuple[str, ...]          # task 18; each story draws its own size order
  motivations: tuple[tuple[str, str, str], ...]  # (feeling, place, object), task 20
  templates: dict[str, tuple[str, ...]]
  varied_lengths: bool            # synthetic: story shapes are drawn, not fixed

  @property
  def names(self) -> tuple[str, ...]:
    return self.male + self.female

  def gender(self, name: str) -> str:
    return "he" if name in self.male else "she"

  def say(self, rng: random.Random, key: str, **fields) -> str:
    """One sentence from a randomly chosen template of kind `key`, capitalised."""
    text = rng.choice(self.templates[key]).format(**fields)
    return text[0].upper() + text[1:]


_ORIGINAL_TEMPLATES = {
    "move": ("{a} went to the {p}.", "{a} journeyed to the {p}.", "{a} travelled to the {p}.",
             "{a} moved to the {p}.", "{a} went back to the {p}."),
    "get": ("{a} picked up the {o}.", "{a} got the {o}.", "{a} grabbed the {o}.", "{a} took the {o}.",
            "{a} picked up the {o} there.", "{a} got the {o} there.", "{a} grabbed the {o} there.",
            "{a} took the {o} there."),
    "drop": ("{a} dropped the {o}.", "{a} discarded the {o}.", "{a} put down the {o}.", "{a} left the {o}.",
             "{a} dropped the {o} there.", "{a} discarded the {o} there.", "{a} left the {o} there."),
    "give": ("{a} gave the {o} to {b}.", "{a} handed the {o} to {b}.", "{a} passed the {o} to {b}."),
    "then": ("then", "after that", "following that", "afterwards"),
    "pair_move": ("{a} and {b} went to the {p}.", "{a} and {b} journeyed to the {p}.",
                  "{a} and {b} travelled to the {p}.", "{a} and {b} moved to the {p}.",
                  "{a} and {b} went back to the {p}."),
    "not_in": ("{a} is not in the {p}.", "{a} is no longer in the {p}."),
    "is_in": ("{a} is in the {p}.",),
    "either": ("{a} is either in the {p} or the {q}.",),
    "q_where": ("Where is {x}?",),
    "q_is_in": ("Is {a} in the {p}?",),
    "q_count": ("How many objects is {a} carrying?",),
    "q_list": ("What is {a} carrying?",),
    "q_before": ("Where was {x} before the {p}?",),
    "q_dir_what": ("What is {d} of the {p}?",),
    "q_dir_of": ("What is the {p} {d} of?",),
    "q_path": ("How do you go from the {p} to the {q}?",),
}

_SYNTHETIC_EXTRA = {
    "move": ("{a} walked to the {p}.", "{a} ran to the {p}.", "{a} headed to the {p}.",
             "{a} strolled to the {p}.", "{a} hurried to the {p}.", "{a} wandered to the {p}.",
             "{a} returned to the {p}.", "{a} made it to the {p}."),
    "get": ("{a} collected the {o}.", "{a} fetched the {o}.", "{a} lifted the {o}.",
            "{a} took hold of the {o}.", "{a} snatched the {o}.", "{a} collected the {o} there."),
    "drop": ("{a} set down the {o}.", "{a} put the {o} down.", "{a} abandoned the {o}.",
             "{a} got rid of the {o}.", "{a} set down the {o} there."),
    "give": ("{a} handed over the {o} to {b}.", "{a} offered the {o} to {b}.", "{a} delivered the {o} to {b}."),
    "then": ("later", "next", "soon after", "after a while"),
    "pair_move": ("{a} and {b} walked to the {p}.", "{a} and {b} headed to the {p}.",
                  "{a} and {b} ran to the {p}.", "{a} and {b} returned to the {p}."),
    "not_in": ("{a} is no longer inside the {p}.", "{a} has left the {p}."),
    "is_in": ("{a} is inside the {p}.", "{a} is at the {p}."),
    "either": ("{a} is in the {p} or in the {q}.", "{a} is perhaps in the {p} or maybe in the {q}."),
    "q_where": ("Where is {x} now?", "Where can {x} be found?"),
    "q_is_in": ("Is {a} inside the {p}?", "Is {a} at the {p}?"),
    "q_count": ("How many things is {a} holding?", "How many items does {a} have?"),
    "q_list": ("What is {a} holding?", "What does {a} have?"),
    "q_before": ("Where was {x} just before the {p}?",),
    "q_dir_what": ("Which place is {d} of the {p}?",),
    "q_dir_of": ("Which place is the {p} {d} of?",),
    "q_path": ("What is the way from the {p} to the {q}?",),
}

ORIGINAL = Vocab(
    mode="original",
    male=("John", "Daniel", "Fred", "Jeff", "Bill", "Bernhard", "Greg", "Julius", "Brian", "Jason",
          "Antoine", "Sumit", "Yann"),
    female=("Mary", "Sandra", "Julie", "Gertrude", "Winona", "Jessica", "Emily", "Lily"),
    rooms=("bedroom", "kitchen", "garden", "hallway", "bathroom", "office"),
    outdoor=("school", "park", "cinema"),
    objects=("apple", "football", "milk", "pajamas"),
    animals=(("mouse", "mice"), ("sheep", "sheep"), ("wolf", "wolves"), ("cat", "cats")),
    species=("swan", "lion", "frog", "rhino"),
    colors=("gray", "white", "yellow", "green"),
    shapes=("square", "rectangle", "triangle", "sphere"),
    shape_colors=("red", "blue", "pink", "yellow"),
    sizes=("chest", "suitcase", "container", "box", "box of chocolates", "chocolate"),
    motivations=(("hungry", "kitchen", "apple"), ("thirsty", "kitchen", "milk"),
                 ("bored", "garden", "football"), ("tired", "bedroom", "pajamas")),
    templates=_ORIGINAL_TEMPLATES,
    varied_lengths=False,
)

# The actors the released files use per task; synthetic mode draws from the whole name pool instead.
ORIGINAL_ACTORS = {
    5: ("Fred", "Jeff", "Bill", "Mary"), 10: ("Bill", "Fred", "Julie", "Mary"),
    14: ("Bill", "Fred", "Julie", "Mary"), 15: ("Gertrude", "Winona", "Jessica", "Emily"),
    16: ("Lily", "Bernhard", "Greg", "Julius", "Brian"), 20: ("Jason", "Antoine", "Sumit", "Yann"),
}
DEFAULT_ACTORS = ("John", "Mary", "Sandra", "Daniel")
# The places of a task's released file where it is not all rooms: task 14 answers with these six only.
ORIGINAL_PLACES = {14: ("bedroom", "cinema", "kitchen", "office", "park", "school")}

_SYN_MALE = """John Daniel Fred Jeff Bill Bernhard Greg Julius Brian Jason Antoine Sumit Yann Adam Albert
Alex Andrew Arthur Ben Carl Charles Chris David Diego Edward Elias Eric Felix Frank George Hans Harry
Henry Hugo Ian Isaac Ivan Jack Jacob James Joel Jonas Jorge Karl Kevin Leo Liam Lucas Luis Marco Mark
Martin Max Michael Noah Oliver Omar Oscar Owen Paul Peter Philip Rafael Ravi Robert Samuel Simon Stefan
Thomas Tim Victor Walter Xavier Zane Kenji Tariq Emil Nils""".split()
_SYN_FEMALE = """Mary Sandra Julie Gertrude Winona Jessica Emily Lily Alice Anna Amelia Beatrice Bella
Carla Chloe Clara Diana Elena Ella Emma Eva Fatima Fiona Grace Hannah Helen Ines Irene Isabel Ivy Jane
Julia Kate Laura Lea Lena Lucy Maria Marta Maya Mia Nadia Nina Nora Olga Olivia Paula Petra Priya Rachel
Rita Rosa Ruth Sara Sofia Sophie Tara Tina Uma Vera Wendy Yara Zoe Greta Hilda Ingrid Keiko Leila
Mira Noor""".split()
_SYN_ROOMS = ("bedroom kitchen garden hallway bathroom office library garage attic cellar studio balcony "
              "porch pantry basement lobby gym classroom museum bakery station harbor market church "
              "theater hospital airport beach forest farm barn stable greenhouse workshop shed cafe "
              "restaurant bank pharmacy zoo stadium playground bridge lake meadow orchard vineyard castle "
              "tower lighthouse village courtyard corridor nursery laboratory warehouse factory").split() + [
                  "dining room", "living room", "laundry room", "post office", "music room", "guest room"]
_SYN_OUTDOOR = ("school park cinema mall library museum stadium beach zoo harbor airport market "
                "hospital church bakery theater").split()
_SYN_OBJECTS = ("apple football milk pajamas banana book candle umbrella hat key lamp pencil notebook cup "
                "bottle ball guitar camera phone wallet scarf glove ticket map compass hammer kite violin "
                "basket blanket pillow towel spoon plate orange sandwich newspaper letter rope flashlight "
                "backpack jacket watch ring coin bucket brush mirror clock radio soap").split()
_SYN_ANIMALS = (("mouse", "mice"), ("sheep", "sheep"), ("wolf", "wolves"), ("cat", "cats"),
                ("dog", "dogs"), ("fox", "foxes"), ("bear", "bears"), ("goose", "geese"), ("owl", "owls"),
                ("snake", "snakes"), ("hawk", "hawks"), ("rabbit", "rabbits"), ("lion", "lions"),
                ("tiger", "tigers"), ("horse", "horses"), ("deer", "deer"))
_SYN_SPECIES = ("swan lion frog rhino parrot zebra turtle duck crow eagle bear camel goat penguin "
                "lizard whale").split()
_SYN_COLORS = "gray white yellow green blue red brown black pink orange purple silver".split()
_SYN_SHAPES = "square rectangle triangle sphere circle cube star diamond hexagon cone".split()
_SYN_SHAPE_COLORS = "red blue pink yellow green black white orange purple".split()
_SYN_SIZES = ("wardrobe", "chest", "crate", "trunk", "suitcase", "container", "drawer", "box",
              "basket", "backpack", "box of chocolates", "jar", "purse", "mug", "chocolate", "marble")
_SYN_MOTIVATIONS = ORIGINAL.motivations + (
    ("dirty", "bathroom", "soap"), ("cold", "living room", "blanket"), ("curious", "library", "book"),
    ("wet", "laundry room", "towel"), ("sporty", "gym", "ball"), ("lost", "hallway", "map"),
    ("musical", "music room", "guitar"), ("sleepy", "guest room", "pillow"))

SYNTHETIC = dataclasses.replace(
    ORIGINAL, mode="synthetic", male=tuple(_SYN_MALE), female=tuple(_SYN_FEMALE),
    rooms=tuple(_SYN_ROOMS), outdoor=tuple(_SYN_OUTDOOR), objects=tuple(_SYN_OBJECTS),
    animals=_SYN_ANIMALS, species=tuple(_SYN_SPECIES), colors=tuple(_SYN_COLORS), shapes=tuple(_SYN_SHAPES),
    shape_colors=tuple(_SYN_SHAPE_COLORS), sizes=_SYN_SIZES, motivations=_SYN_MOTIVATIONS,
    templates={k: v + _SYNTHETIC_EXTRA.get(k, ()) for k, v in _ORIGINAL_TEMPLATES.items()},
    varied_lengths=True,
)


def get_vocab(mode: str) -> Vocab:
  if mode not in MODES:
    raise ValueError(f"unknown bAbI mode {mode!r}: use one of {', '.join(MODES)}")
  return ORIGINAL if mode == "original" else SYNTHETIC


def actors_for(vocab: Vocab, task: int, rng: random.Random, k: int) -> list[str]:
  """`k` distinct actors for one story: the task's original cast, or a fresh draw from the big pool."""
  pool = ORIGINAL_ACTORS.get(task, DEFAULT_ACTORS) if vocab.mode == "original" else vocab.names
  return rng.sample(pool, min(k, len(pool)))
