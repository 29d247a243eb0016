"""The LLM-judge rewards (hf_megadocs.tuning.judge) through the openai backend.

A loopback server whose "judge" answers by fixed rules checks the parsing, the None
handling and the source-score cache exactly; a real `vllm serve` of the embedded SmolLM2
checks that a real model's free-form answers come back as rewards or counted Nones.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_megadocs.tuning.judge import JudgeConfig
from hf_megadocs.tuning.rewards import Rewards
from tests.conftest import free_port

SOURCE = "The council built a levee in 2019. It held during the floods of 2023."


def _answer(prompt: str) -> str:
    """The rule-based judge: what a careful judge would say, or junk when told to."""
    if "JUNK" in prompt:
        return "I am not sure what you mean."
    if prompt.startswith("You check rewrites"):
        return "YES" if "levee" in prompt.split("REWRITE:")[1] else "No."
    if prompt.startswith("You compare the layout"):
        source, rewrite = prompt.split("SOURCE:\n", 1)[1].split("\n\nREWRITE:\n")
        return "Yes." if source.count("\n- ") == rewrite.count("\n- ") else "NO"
    if prompt.startswith("You check notes"):
        entries = re.findall(r"^(\d+)\. Topic: (.*)$", prompt, re.M)
        return "\n".join(
            f"{n}: {'faithful' if 'levee' in topic.lower() else 'unfaithful topic'}"
            for n, topic in entries
        )
    text = prompt.split("TEXT:\n", 1)[1]
    return f"Score: {min(10, 1 + len(text) // 20)}"


class RuleJudge:
    def __init__(self) -> None:
        self.prompts: list[str] = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, body: dict) -> None:
                blob = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def do_GET(self) -> None:
                self._send({"data": [{"id": "rule-judge", "max_model_len": 8192}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                judge.prompts.append(prompt)
                self._send({
                    "choices": [{"message": {"role": "assistant", "content": _answer(prompt)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                })  # fmt: skip

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rule_judge():
    judge = RuleJudge()
    yield judge
    judge.close()


def _rewards(operation: str, url: str) -> Rewards:
    from hf_megadocs.tuning.judge import EndpointJudge

    return Rewards(operation, judge=EndpointJudge(JudgeConfig(base_url=url)))


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_rephrase_faithfulness_reads_yes_no_and_counts_junk(rule_judge):
    rewards = _rewards("rephrase", rule_judge.url)
    outputs = ["A levee was built in 2019 and held in 2023.", "Cats sleep a lot.",
               "JUNK answer please", ""]  # fmt: skip
    scores = rewards.judge_faithfulness(completions=[chat(o) for o in outputs], source=[SOURCE] * 4)
    assert scores == [1.0, 0.0, None, 0.0]  # empty output: 0 without asking
    assert rewards.judge.unparsed == {"faithfulness": 1}
    assert len(rule_judge.prompts) == 3


def test_structure_judge_reads_yes_no_and_counts_junk(rule_judge):
    rewards = _rewards("rephrase", rule_judge.url)
    source = "Before you start:\n- a levee permit\n- a survey"
    outputs = ["First get:\n- the permit\n- the survey", "Get a permit and a survey first.",
               "JUNK answer please", ""]  # fmt: skip
    scores = rewards.judge_structure(completions=[chat(o) for o in outputs], source=[source] * 4)
    assert scores == [1.0, 0.0, None, 0.0]  # empty output: 0 without asking
    assert rewards.judge.unparsed == {"structure": 1}
    assert len(rule_judge.prompts) == 3
    assert all(p.startswith("You compare the layout") for p in rule_judge.prompts)


def test_reformat_faithfulness_is_the_share_of_faithful_entries(rule_judge):
    rewards = _rewards("reformat", rule_judge.url)
    entries = "Topic: The levee\nContent: Built in 2019.\n\nTopic: Cats\nContent: They sleep."
    scores = rewards.judge_faithfulness(
        completions=[chat(entries), chat("no entries at all")], source=[SOURCE] * 2
    )
    assert scores == [0.5, 0.0]
    assert len(rule_judge.prompts) == 1  # the output without entries is not sent


def test_quality_delta_scores_each_source_once(rule_judge):
    rewards = _rewards("rephrase", rule_judge.url)
    outputs = [chat("x" * 200), chat("y" * 20)]
    first = rewards.judge_quality(completions=outputs, source=[SOURCE, SOURCE])
    expected_source = min(10, 1 + len(SOURCE) // 20)
    assert first == pytest.approx([(10 - expected_source) / 9, (2 - expected_source) / 9])
    asked = len(rule_judge.prompts)
    rewards.judge_quality(completions=outputs[:1], source=[SOURCE])
    assert len(rule_judge.prompts) == asked + 1  # only the output: the source is cached


def test_judge_rewards_without_an_endpoint_say_what_to_set():
    from hf_megadocs.tuning.config import TuneConfig

    with pytest.raises(ValueError, match="judge.base_url"):
        TuneConfig(rewards={"judge_faithfulness": 1.0})
    with pytest.raises(ValueError, match="judge.base_url"):
        Rewards("rephrase").judge_quality(completions=[chat("x")], source=["y"])


@pytest.mark.slow
def test_a_real_model_as_judge_gives_rewards_or_counted_nones(vllm_server):
    rewards = _rewards("rephrase", vllm_server)
    outputs = ["A levee was built in 2019 and it held during the 2023 floods.", "Cats sleep."]
    faithful = rewards.judge_faithfulness(completions=[chat(o) for o in outputs],
                                          source=[SOURCE] * 2)  # fmt: skip
    quality = rewards.judge_quality(completions=[chat(o) for o in outputs], source=[SOURCE] * 2)
    structure = rewards.judge_structure(completions=[chat(o) for o in outputs],
                                        source=[SOURCE] * 2)  # fmt: skip
    assert all(v is None or v in (0.0, 1.0) for v in faithful + structure)
    assert all(v is None or -1.0 <= v <= 1.0 for v in quality)
    nones = sum(v is None for v in faithful + quality + structure)
    assert sum(rewards.judge.unparsed.values()) >= nones  # every None was counted
