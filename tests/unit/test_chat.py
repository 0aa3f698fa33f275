"""The chat page (served without the key, self-contained) and conversation-aware retrieval's parts:
which turns are searched with, how each method builds the search, and condensing with a model."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from tests.unit.test_serving import KEY, FakeBackend, auth, client_for
from twin_ops.config import load_params
from twin_ops.rag.retrieve import (
    condense_question,
    conversation_query,
    earlier_user_turns,
    turn_weights,
    weighted_vector,
)
from twin_ops.serving.api import STATIC

# --- the page ------------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_without_the_key_and_the_api_still_needs_it(params):
    client = client_for(params, key=KEY)
    home = client.get("/", follow_redirects=False)
    assert home.status_code in {302, 307} and home.headers["location"] == "/chat"
    page = client.get("/chat")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="twin">' in page.text and '<label for="message">' in page.text
    script = client.get("/static/chat.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    style = client.get("/static/chat.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/v1/models").status_code == 401  # the page is open; the API is not
    assert client.get("/v1/models", headers=auth()).status_code == 200


def test_the_page_is_not_in_the_api_schema(params):
    paths = client_for(params).get("/openapi.json").json()["paths"]
    assert not {"/", "/chat"} & set(paths)


def without_comments(text: str) -> str:
    """Code only: /* */ blocks and // line comments removed (so a comment may name what code must not do)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"(^|\s)//.*$", "", text, flags=re.MULTILINE)


def test_the_page_fetches_nothing_from_outside_and_never_writes_html_from_text():
    files = {path.name: path.read_text() for path in STATIC.iterdir()}
    assert set(files) == {"chat.html", "chat.css", "chat.js"}
    for name, text in files.items():
        assert "http://" not in text and "https://" not in text, name
        assert "//" not in without_comments(text), f"{name}: a protocol-relative (external) reference"
    for reference in re.findall(r'(?:src|href)="([^"]*)"', files["chat.html"]):
        assert not reference.startswith(("/", "data:", "javascript:")) and ":" not in reference, reference
    script = without_comments(files["chat.js"])
    assert "innerHTML" not in script and "outerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script
    # The key goes in the Authorization header only: never into a URL or the console.
    assert "console." not in script and "?key" not in script and "api_key=" not in script
    assert re.findall(r"fetch\(([^,)]*)", script) == ["path"]  # one fetch, through api(), to the app's own paths


def test_a_chat_sends_the_earlier_messages_to_retrieval(params):
    backend = FakeBackend()
    messages = [
        {"role": "user", "content": "What did you find under the mast step?"},
        {"role": "assistant", "content": "Rot."},
        {"role": "user", "content": "Why does it matter?"},
    ]
    response = client_for(params, backend).post(
        "/v1/chat/completions", json={"model": "wren-halvorsen-twin", "messages": messages}, headers=auth()
    )
    assert response.status_code == 200, response.text
    assert backend.histories == [(("user", messages[0]["content"]), ("assistant", "Rot."))]
    assert backend.requests[0].messages[-1] == ("user", "Why does it matter?")


# --- conversation-aware retrieval ---------------------------------------------------------------


def with_method(params, **conversation):
    return params.model_copy(
        update={
            "rag": params.rag.model_copy(
                update={"conversation": params.rag.conversation.model_copy(update=conversation)}
            )
        }
    )


HISTORY = (
    ("user", "What filled up the disk that night?"),
    ("assistant", "A chatty library."),
    ("user", "   "),
    ("user", "Which library was it?"),
)


def test_earlier_user_turns_are_the_users_newest_oldest_first():
    assert earlier_user_turns(HISTORY, 1) == ["Which library was it?"]
    assert earlier_user_turns(HISTORY, 5) == ["What filled up the disk that night?", "Which library was it?"]
    assert earlier_user_turns(HISTORY, 0) == []
    assert earlier_user_turns((), 3) == []


def test_turn_weights_decay_from_the_newest_and_the_mean_is_a_unit_vector():
    assert turn_weights(3, 0.5) == [0.25, 0.5, 1.0]
    assert turn_weights(1, 0.5) == [1.0]
    vector = weighted_vector([[2.0, 0.0], [0.0, 1.0]], [0.5, 1.0])
    assert np.isclose(np.linalg.norm(vector), 1.0)
    assert vector[1] > vector[0] > 0  # the newer turn (weight 1) pulls harder; lengths do not count


async def refuse(earlier, question, author):
    raise AssertionError("only the condense method may call the model")


async def rewrite(earlier, question, author):
    return f"{question} (about: {earlier[-1]}, for {author})"


async def say_nothing(earlier, question, author):
    return "  "


def test_each_method_builds_its_search_from_the_turns(params):
    earlier = ["What filled up the disk?"]
    question = "Which library?"

    def run(condense=refuse, **conversation):
        return asyncio.run(conversation_query(question, earlier, with_method(params, **conversation), "wren", condense))

    assert run(method="last").text == question
    assert run(method="concat").text == "What filled up the disk?\nWhich library?"
    weighted = run(method="weighted", decay=0.5)
    assert weighted.text == "What filled up the disk?\nWhich library?"
    assert weighted.turns == (earlier[0], question) and weighted.weights == (0.5, 1.0)
    assert run(rewrite, method="condense").text == "Which library? (about: What filled up the disk?, for wren)"
    # A model that wrote nothing must not lose the thread: the joined turns are searched instead.
    assert run(say_nothing, method="condense").text == "What filled up the disk?\nWhich library?"
    with pytest.raises(ValueError, match="needs a model"):
        run(None, method="condense")
    # No earlier turns: every method searches the question itself.
    for method in ("concat", "weighted", "condense"):
        found = asyncio.run(conversation_query(question, [], with_method(params, method=method), "wren", refuse))
        assert found.text == question and not found.turns


def test_params_choose_a_known_method(paths):
    with pytest.raises(ValueError, match="method"):
        load_params(paths.root / "params.yaml", {"rag": {"conversation": {"method": "guess"}}})


def test_condensing_is_one_greedy_line_from_the_model(params, tiny_model):
    from twin_ops.llm import GenerationDefaults, ModelSource, load

    model = load(ModelSource("path:tiny", str(tiny_model)), "cpu", GenerationDefaults.from_params(params.llm))
    tight = with_method(params, condense_max_tokens=6)
    first = condense_question(model, ["What filled up the disk?"], "Which library?", tight)
    again = condense_question(model, ["What filled up the disk?"], "Which library?", tight)
    assert first == again  # greedy: the same conversation always searches the same way
    assert "\n" not in first and first == first.strip()
    assert model.count_tokens(first) <= 6 + 1  # at most max_tokens (a re-tokenised join may differ by one)
