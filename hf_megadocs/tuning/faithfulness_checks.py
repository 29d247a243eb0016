"""A labelled check set for the rephrase faithfulness score, built on real passages.

Eight news articles of the embedded Lee corpus (gensim's ``lee_background``, read by line
number) each come with a paraphrase written by hand for this project: every fact kept,
the wording and sentence order changed. Two faithful pairs per article:

- ``faithful``: the article and its paraphrase;
- ``cleaned``: the article wrapped in web boilerplate (menu, share and copyright lines)
  and the same paraphrase, as a rephrase that drops boilerplate should produce;

and four unfaithful texts derived from the paraphrase, one per kind of failure a
faithfulness reward has to catch:

- ``shuffled``: the paraphrase's words in a random order (seeded);
- ``entity_swapped``: the paraphrase with its names, places and numbers replaced by
  plausible wrong ones (a hand-written list of replacements per passage);
- ``truncated``: only the paraphrase's first sentences, about a third of it;
- ``unrelated``: the paraphrase of the next passage in the list (two neighbours are both
  Sydney to Hobart race reports, so one unrelated pair shares its topic).

:func:`check_pairs` returns them as ``(source, candidate, label, kind)`` rows: the
threshold of :mod:`hf_megadocs.tuning.faithfulness` was chosen on this set, and
``benchmarks/bench_faithfulness.py`` and the tests measure how well it separates it.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

KINDS = ("faithful", "cleaned", "shuffled", "entity_swapped", "truncated", "unrelated")
FAITHFUL_KINDS = ("faithful", "cleaned")
BOILERPLATE: tuple[tuple[str, str], ...] = (
    (
        "Home | World | Business | Sport | Contact\nSkip to main content\n",
        (
            "\nShare this article: Facebook Twitter Email\nMore stories\n"
            "Copyright 2001. All rights reserved. Privacy | Terms"
        ),
    ),
    (
        "Subscribe to our newsletter\nMenu\n",
        "\nTags: news, australia\nPrint this page | Email a friend\nYou are here: Home > News",
    ),
    (
        "Advertisement\nLatest headlines\n",
        "\nComments (0)\nAdd your comment\nBack to top\n(c) 2001 News Online",
    ),
)
"""(header, footer) lines wrapped around an article for the ``cleaned`` pairs."""


@dataclass(frozen=True)
class CheckPassage:
    """One Lee article, its hand-written paraphrase and the facts to swap in it."""

    line: int
    """Line number (from 0) in ``lee_background.cor``."""
    digest: str
    """blake2b-8 of the article's text: a changed corpus file fails loudly."""
    paraphrase: str
    swaps: tuple[tuple[str, str], ...]
    """(text in the paraphrase, wrong replacement), applied in order."""


@dataclass(frozen=True)
class CheckPair:
    """A source, a candidate rewrite of it, and whether the rewrite is faithful."""

    source: str
    candidate: str
    faithful: bool
    kind: str
    line: int


PASSAGES: tuple[CheckPassage, ...] = (
    CheckPassage(
        24,
        "579ca865dcbd95f4",
        "Two Swiss tourists are being walked back to safety in a central Australian community "
        "by a police team after their vehicle sank into sand in the Finke River during the "
        "night. According to a police spokesman, officers were sent to the spot, 100 "
        "kilometres west of Alice Springs, once Australian Search and Rescue picked up a "
        "signal from an emergency beacon. The pair had been trying to drive across the river "
        "when the vehicle got bogged in soft sand. A ground unit went out as well, the "
        "spokesman said, yet the officers still had to cover the last 12 kilometres on foot to "
        "get to the Swiss travellers trapped in their vehicle. This morning the tourists and "
        "their rescuers are expected to walk for roughly four hours and then drive on to the "
        "Hermansburg community.",
        (
            ("Swiss", "German"),
            ("Finke", "Todd"),
            ("100", "250"),
            ("Alice Springs", "Tennant Creek"),
            ("12", "30"),
            ("four hours", "nine hours"),
            ("Hermansburg", "Yuendumu"),
        ),
    ),
    CheckPassage(
        27,
        "c8634442ad4d492a",
        "The Swedish round-the-world racer Assa Abloy was first across the line in the 57th "
        "Sydney to Hobart race. This morning it came up the Derwent River in light winds, "
        "followed by a big fleet of spectator boats, and finished a little under two days and "
        "21 hours after leaving Sydney. Crowds packed the Hobart docks to greet it. Another "
        "Swedish maxi, Nicorette, sits second, two nautical miles back, with five more Volvo "
        "60s close by. Assa Abloy's crew will have little time to celebrate, because the "
        "round-the-world boats get only a few hours of rest before they race on to Auckland.",
        (
            ("Swedish", "Norwegian"),
            ("Assa Abloy", "Illbruck"),
            ("57th", "49th"),
            ("Derwent", "Tamar"),
            ("two days and 21 hours", "three days and 4 hours"),
            ("Nicorette", "Amer Sports"),
            ("two nautical miles", "eleven nautical miles"),
            ("five more", "two more"),
            ("Auckland", "Cape Town"),
        ),
    ),
    CheckPassage(
        46,
        "5aaf9e58894310e7",
        "A storm that struck the fleet off the south coast of New South Wales overnight has "
        "forced seven yachts out of the Sydney to Hobart race. This morning the South "
        "Australian boats SAP Ausmaid and Secret Men's Business were both dismasted. Late last "
        "night the Victorian maxi Wild Thing, one of the line honours favourites, turned back "
        "to Sydney with damaged sails. Simply Red, Broomstick, Cadibarra and Sting were also "
        "damaged by the storm and had to return to Sydney. The Volvo ocean racer Tyco is in "
        "front, ahead of Assa Abloy.",
        (
            ("seven", "three"),
            ("New South Wales", "Victoria"),
            ("South Australian", "Western Australian"),
            ("SAP Ausmaid", "Nokia"),
            ("Victorian", "Queensland"),
            ("Wild Thing", "Brindabella"),
            ("Tyco", "Djuice"),
            ("Assa Abloy", "Nicorette"),
        ),
    ),
    CheckPassage(
        54,
        "7f36a62bf73e42b7",
        "A 21-year-old man is being questioned by police after he stole a car, with a child "
        "still inside it, from the Northside Shopping Centre in Alice Springs. Senior Sergeant "
        "Michael Potts said the thief found the 20-month-old boy soon after driving off and "
        "left him on Elliot Street. People passing by saw the boy sitting on the kerb and took "
        "him back to his parents. Police chased the stolen car for roughly 160 kilometres "
        "along the Stuart Highway and Tanami Road until it ran out of petrol. According to "
        "Senior Sergeant Potts, the man was caught after a brief pursuit on foot through the "
        "bush, and officers are now interviewing him.",
        (
            ("21-year-old", "34-year-old"),
            ("Northside", "Yeperenye"),
            ("Alice Springs", "Katherine"),
            ("Michael Potts", "David Ross"),
            ("Sergeant Potts", "Sergeant Ross"),
            ("20-month-old", "four-year-old"),
            ("Elliot Street", "Gap Road"),
            ("160", "40"),
            ("Stuart Highway", "Victoria Highway"),
            ("Tanami Road", "Buntine Road"),
        ),
    ),
    CheckPassage(
        91,
        "0d6ab26ab69065ff",
        "A motorway could be built over the Flanders resting place of thousands of Australian "
        "soldiers from World War I in Belgium. Flemish authorities are weighing a bypass "
        "straight through the Pilkem Ridge battlefield, where the first infantry phase of the "
        "Third Battle of Ypres was fought between July and November 1917 and where 9,200 "
        "Australian servicemen were killed. Of those Australians, 5,000 have been accounted "
        "for; should the planned route be approved, many of the thousands who are still "
        "missing would end up beneath bitumen and heavy traffic. The route would also cut the "
        "battlefield in two and pass near roughly a dozen Belgian war cemeteries cared for by "
        "the Commonwealth War Graves Commission. A decision on where the motorway goes is due "
        "early next year.",
        (
            ("Australian", "Canadian"),
            ("Flemish", "Walloon"),
            ("Pilkem Ridge", "Messines Ridge"),
            ("Third Battle", "Second Battle"),
            ("July and November 1917", "March and May 1916"),
            ("9,200", "2,700"),
            ("5,000", "1,500"),
            ("a dozen", "forty"),
            ("Commonwealth War Graves Commission", "Belgian Heritage Trust"),
        ),
    ),
    CheckPassage(
        121,
        "6f9b163218ae333d",
        "Hopes for a strong economic start to the new year have been lifted by the newest "
        "survey of business expectations. Dun and Bradstreet found upbeat forecasts for sales, "
        "profits, investment and jobs. Among the organisations it surveyed in November, 48 per "
        "cent expected sales to rise in the first quarter of the new year. Twenty per cent "
        "intended to hire more staff, while 15 per cent said they had been cutting jobs. "
        "Expected profits are sharply higher and plans for investment are a little better. "
        "Companies also told the survey that complying with the goods and services tax (GST) "
        "has become much easier.",
        (
            ("Dun and Bradstreet", "Sensis"),
            ("November", "August"),
            ("48", "23"),
            ("first quarter", "second half"),
            ("Twenty per cent", "Six per cent"),
            ("15 per cent", "31 per cent"),
            ("goods and services tax (GST)", "fringe benefits tax (FBT)"),
        ),
    ),
    CheckPassage(
        124,
        "17aad20fe950889a",
        "After last week's oil spill at Phillip Island, the Federal Opposition is calling for "
        "harsher penalties on ships that spill oil. Volunteers expect to remove the remaining "
        "oil from Phillip Island today, while authorities are still searching for the spill's "
        "source; 360 fairy penguins were affected. Shadow Environment Minister Kelvin Thomson "
        "said stronger deterrents are needed to stop more spills. He said a lack of "
        "prosecutions seems to be part of the problem with oil spills, and that people who "
        "cause spills recklessly or negligently, seriously harming the environment, should "
        "face prosecution.",
        (
            ("last week's", "last month's"),
            ("Phillip Island", "Kangaroo Island"),
            ("Federal Opposition", "Greens"),
            ("360", "1,200"),
            ("fairy penguins", "sea lions"),
            ("Kelvin Thomson", "Bob Brown"),
        ),
    ),
    CheckPassage(
        136,
        "15492cd767bb8e8c",
        "The cost of Australia's aging population has been overstated, according to a new "
        "report. Issued by the Australia Institute, it says that a close look at population "
        "and health figures shows an older population will not place an unbearable load on a "
        "smaller workforce. Rather than being an economic and social burden, most older people "
        "were found to live healthy, independent lives, and many help their families "
        "financially and do volunteer work in the community. The paper questions the belief "
        "that an aging population will push health spending to levels that cannot be "
        "sustained, saying rising health costs come mostly from other causes, such as advances "
        "in medical technology, growing consumer demand and higher prices.",
        (
            ("Australia's", "Canada's"),
            ("Australia Institute", "Fraser Institute"),
            ("medical technology", "immigration"),
        ),
    ),
)

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
TRUNCATED_SHARE = 0.35
"""``truncated`` keeps whole sentences up to about this share of the paraphrase."""


def passage_digest(text: str) -> str:
    """The digest :class:`CheckPassage` records for an article's text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def lee_articles() -> list[str]:
    """The embedded Lee corpus's 300 news articles, one per line as in the file."""
    from hf_megadocs.generation.embedded import embedded_corpus_path

    return Path(embedded_corpus_path("lee_background")).read_text(encoding="utf-8").splitlines()


def swap_entities(passage: CheckPassage) -> str:
    """The paraphrase with every swap applied (each must change the text)."""
    text = passage.paraphrase
    for old, new in passage.swaps:
        if old not in text:
            raise ValueError(f"swap {old!r} -> {new!r} does not occur in line {passage.line}")
        text = text.replace(old, new)
    return text


def truncate(text: str, share: float = TRUNCATED_SHARE) -> str:
    """Leading whole sentences of ``text`` up to about ``share`` of its length (at least one)."""
    sentences = _SENTENCE.split(text.strip())
    kept = [sentences[0]]
    for sentence in sentences[1:]:
        if len(" ".join([*kept, sentence])) > share * len(text):
            break
        kept.append(sentence)
    return " ".join(kept)


def shuffle_words(text: str, seed: int) -> str:
    """``text``'s words in a random order fixed by ``seed``."""
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def check_pairs() -> list[CheckPair]:
    """The labelled pairs: per passage two faithful pairs and four unfaithful ones.

    Raises:
        ValueError: the embedded corpus is not the one the paraphrases were written for.
    """
    articles = lee_articles()
    pairs: list[CheckPair] = []
    for index, passage in enumerate(PASSAGES):
        source = articles[passage.line].strip()
        if passage_digest(source) != passage.digest:
            raise ValueError(
                f"lee_background.cor line {passage.line} is not the article its check "
                f"paraphrase was written for (digest {passage_digest(source)}); the embedded "
                "corpus changed: reinstall gensim or rewrite the check set."
            )
        other = PASSAGES[(index + 1) % len(PASSAGES)].paraphrase
        candidates = {
            "faithful": passage.paraphrase,
            "shuffled": shuffle_words(passage.paraphrase, seed=passage.line),
            "entity_swapped": swap_entities(passage),
            "truncated": truncate(passage.paraphrase),
            "unrelated": other,
        }
        header, footer = BOILERPLATE[index % len(BOILERPLATE)]
        for kind in KINDS:
            where = header + source + footer if kind == "cleaned" else source
            candidate = candidates.get(kind, passage.paraphrase)
            pairs.append(CheckPair(where, candidate, kind in FAITHFUL_KINDS, kind, passage.line))
    return pairs


__all__ = [
    "BOILERPLATE",
    "FAITHFUL_KINDS",
    "KINDS",
    "PASSAGES",
    "CheckPair",
    "CheckPassage",
    "check_pairs",
    "lee_articles",
    "passage_digest",
    "shuffle_words",
    "swap_entities",
    "truncate",
]
