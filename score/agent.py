"""The solver as a research agent (`generate.agent: react`): a tool loop the model drives, one token sequence each.

The model writes one tool call per turn in its own words and sees the tool's output before its next turn:

    <search>a short query</search>   the library's passages, numbered [n] as the trajectory first meets them
    <read>n</read>                   the whole text of source [n] (search results show `generate.passage_chars`)
    <answer>...report...</answer>    the cited report; a turn that ends with no call at all is the report too

Every trajectory's first turn starts with `<search>` already written and has `generate.call_tokens` to close it (a
scaffold for small models: each trajectory searches at least once, and a query that runs on into a report is a
malformed call, not a page of tokens; the prefilled tokens carry no loss). The prompt's example search is the
query's own first keywords (a small model copies the example it is shown). A turn ends at its call's closing tag,
the end of the model's message, or `generate.report_tokens`; the loop ends when the model answers, or cuts the
trajectory when its next turn would not fit in `generate.max_context_tokens` or it calls a tool after
`generate.max_tool_calls` calls. A malformed call, an unknown tool, a source number that does not exist and a
search service that fails or finds nothing each become a tool output the model reads (and a counted error); the
loop never raises on what the model writes.

A trajectory is one token sequence: the prompt (stored as the span's prefix, shared by the query's K trajectories),
then the model's turns and the tools' outputs, with a mask (1: written by the model, the only tokens with loss) and
each written token's sampling log-prob. Turns are sampled by continuing the exact token ids (never re-tokenized),
so the trainer's one forward over the sequence sees what the sampler saw.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from score.models.base import Backend, Message, SamplingParams
from score.progress import turn_line
from score.prompts import SOLVER_SYSTEM
from score.search.base import Passage, SearchBackend
from score.search.searxng import SearchError

log = logging.getLogger(__name__)

TOOLS = ("search", "read", "answer")
STOPS = tuple(f"</{t}>" for t in TOOLS)
FIRST_CALL = "<search>"
_CLOSED = re.compile(r"</(search|read|answer)>\s*$")
_OPEN = re.compile(r"<(search|read|answer)>")
_UNKNOWN = re.compile(r"<([a-z_]{2,20})>([^<]*)</\1>\s*$")


def agent_messages(query: str, max_tool_calls: int) -> list[Message]:
    ask = (
        f"Research query: {query}\n\n"
        "Research it with tools, one call per turn; you see each result before your next step.\n"
        f"<search>{example_search(query)}</search> searches the library for a few keywords; results come back "
        "numbered [1], [2], ...\n"
        "<read>2</read> shows the whole text of source [2].\n"
        f"After at most {max_tool_calls} tool calls, write the report inside <answer></answer>: a brief markdown "
        "report (about 120 words) with a # title, two ## sections, and inline citations like [1] after each claim "
        "they support."
    )
    return [Message("system", SOLVER_SYSTEM), Message("user", ask)]


_KEYWORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")
_FILLER = frozenset(
    "about analyze analyse assess compare conduct create describe develop discuss evaluate examine explain explore "
    "identify investigate provide research review study summarize their there these this those what when where which "
    "with from into over that will would should could".split()
)


def example_search(query: str, words: int = 4) -> str:
    """The prompt's example call: the query's first few content words. A small model copies the example it is
    shown, so the example is a sensible first search for this query rather than a placeholder.

    >>> example_search("Evaluate the global investment patterns in the InsurTech sector since 2020.")
    'global investment patterns InsurTech'
    """
    kept = [w for w in _KEYWORD.findall(query) if w.lower() not in _FILLER]
    return " ".join(kept[:words]) or "keywords"


@dataclass
class Turn:
    """One model turn and the tool output that answered it."""

    written: str  # what the model wrote this turn, up to and including its call
    tool: str  # search | read | answer | end (no call: the turn is the report) | error | cut
    argument: str  # the call's argument (the query, the source number, the report)
    output: str  # the tool output appended to the context ("" for answer, end and cut)
    passage_ids: list[str] = field(default_factory=list)  # passages the output showed
    error: str = ""  # malformed | unknown_tool | no_source | search_failed | no_results | over_budget


@dataclass
class AgentTrajectory:
    """One trajectory's token sequence (after the prompt), its turns and its numbered sources."""

    prompt: str  # the rendered prompt, the span's prefix
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # everything after the prompt: turns and tool outputs
    mask: list[int] = field(default_factory=list)  # 1 for a token the model wrote
    logprobs: list[float] = field(default_factory=list)  # the written tokens' sampling log-probs, 0 elsewhere
    turns: list[Turn] = field(default_factory=list)
    sources: dict[str, tuple[int, Passage]] = field(default_factory=dict)  # passage id -> (number, passage)
    report: str = ""
    finish: str = ""  # stop (answered) | length (the answer hit its turn's budget) | cut (no answer)
    searches: list[tuple[str, list[Passage]]] = field(default_factory=list)

    @property
    def tool_calls(self) -> int:
        return sum(t.tool in ("search", "read") or t.error in ("malformed", "unknown_tool") for t in self.turns)

    @property
    def answered(self) -> bool:
        return self.finish in ("stop", "length")

    def numbered(self) -> list[tuple[int, Passage]]:
        return sorted(self.sources.values(), key=lambda np: np[0])

    def extend(self, ids: list[int], written: bool, logprobs: list[float] | None = None) -> None:
        self.ids += ids
        self.mask += [int(written)] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)


@dataclass(frozen=True)
class Budget:
    max_tool_calls: int
    turn_tokens: int
    call_tokens: int  # the first turn's budget: it starts inside a <search> call, which must close within it
    max_context_tokens: int
    passages_per_search: int
    max_sources: int
    passage_chars: int
    read_chars: int


def run_agents(
    backend: Backend, search: SearchBackend, queries: list[str], budget: Budget, params: SamplingParams, desc: str = ""
) -> list[list[AgentTrajectory]]:
    """`params.n` trajectories for each query, sampled at `params.temperature` from `params.seed` (the budget says
    how long each turn may be), all advanced together turn by turn (one batched sampling call per turn over the
    trajectories still going)."""
    samples = params.n
    trajectories = []
    for q in queries:
        prompt = backend.render(agent_messages(q, budget.max_tool_calls))
        prompt_ids = backend.tokenize(prompt)
        for _ in range(samples):
            t = AgentTrajectory(prompt, prompt_ids)
            t.extend(backend.tokenize(FIRST_CALL), written=False)
            trajectories.append(t)
    going, turn, t0 = list(trajectories), 0, time.monotonic()
    while going:
        fits = []
        for t in going:
            if len(t.prompt_ids) + len(t.ids) + budget.turn_tokens <= budget.max_context_tokens:
                fits.append(t)
            else:
                _cut(t, "context")
        if not fits:
            break
        turn_params = SamplingParams(
            temperature=params.temperature,
            max_tokens=budget.call_tokens if turn == 0 else budget.turn_tokens,
            stop=STOPS,
            seed=params.seed + 1000 * turn,
        )
        outs = backend.sample(
            [t.prompt_ids + t.ids for t in fits], turn_params, desc=f"{desc} turn {turn + 1}" if desc else ""
        )
        going = []
        for t, [s] in zip(fits, outs):
            t.extend(s.token_ids, written=True, logprobs=s.logprobs)
            prefilled = FIRST_CALL if turn == 0 else ""
            if _act(t, prefilled + s.text, s.finish_reason, backend, search, budget):
                going.append(t)
        turn += 1
        if desc:  # the stage's progress: each turn's bar gives only that turn's
            done, turns = len(trajectories) - len(going), budget.max_tool_calls + 1  # calls, then the answer
            log.info(turn_line(f"{desc} research", turn, turns, done, len(trajectories), time.monotonic() - t0))
    return [trajectories[i * samples : (i + 1) * samples] for i in range(len(queries))]


def _act(t: AgentTrajectory, text: str, finish: str, backend: Backend, search: SearchBackend, budget: Budget) -> bool:
    """Read the turn's call, run the tool, append its output; returns whether the trajectory goes on."""
    call = _last_call(text)
    unknown = _UNKNOWN.search(text) if call is None else None
    if (call is None and not unknown) or (call and call[0] == "answer"):  # no call, or <answer>: the report
        report = (call[1] if call else text).strip()
        t.turns.append(Turn(text, "answer" if call else "end", report, ""))
        t.report, t.finish = report, "length" if finish == "length" else "stop"
        return False
    if t.tool_calls >= budget.max_tool_calls:  # any call past the budget, well formed or not, ends it
        t.turns.append(Turn(text, "cut", call[1] if call else unknown.group(2), "", error="over_budget"))
        t.finish = "cut"
        return False
    if unknown:
        message = f"unknown tool <{unknown.group(1)}>: the tools are <search>, <read> and <answer>"
        return _tool(t, Turn(text, "error", unknown.group(2), _error(message), error="unknown_tool"), budget, backend)
    tool, argument, closed = call
    if not closed:  # the turn ended inside the call
        message = f"<{tool}> was not closed with </{tool}>"
        return _tool(t, Turn(text, "error", argument, _error(message), error="malformed"), budget, backend)
    if tool == "search":
        return _search(t, text, argument.strip(), backend, search, budget)
    return _read(t, text, argument.strip(), backend, budget)


def _last_call(text: str) -> tuple[str, str, bool] | None:
    """The turn's call: (tool, argument, closed). A turn ends at its call's closing tag (a stop string), so a closed
    call is the one closing at the end; otherwise the last opening tag, left open (the turn ran out of tokens).

    >>> _last_call("<search>wind</search>"), _last_call("I read. <read>2</read> "), _last_call("<answer># R")
    (('search', 'wind', True), ('read', '2', True), ('answer', '# R', False))
    """
    closed = _CLOSED.search(text)
    if closed:
        tool = closed.group(1)
        start = text.rfind(f"<{tool}>", 0, closed.start())
        return tool, text[start + len(tool) + 2 : closed.start()] if start >= 0 else "", True
    opened = list(_OPEN.finditer(text))
    return (opened[-1].group(1), text[opened[-1].end() :], False) if opened else None


def _search(t: AgentTrajectory, text: str, query: str, backend: Backend, search: SearchBackend, b: Budget) -> bool:
    if not query:
        return _tool(
            t,
            Turn(text, "error", query, _error("empty search: write <search>your query</search>"), error="malformed"),
            b,
            backend,
        )
    try:
        hits = search.search(query, b.passages_per_search)
    except SearchError as e:
        return _tool(
            t,
            Turn(text, "search", query, f"\n<results>\nsearch failed: {e}\n</results>\n", error="search_failed"),
            b,
            backend,
        )
    t.searches.append((query, hits))
    shown = []
    for p in hits:
        if p.id not in t.sources and len(t.sources) < b.max_sources:
            t.sources[p.id] = (len(t.sources) + 1, p)
        if p.id in t.sources:
            shown.append(t.sources[p.id])
    if not shown:
        why = "no results" if not hits else f"no new sources: {b.max_sources} is the most a report may cite"
        return _tool(
            t,
            Turn(text, "search", query, f"\n<results>\n{why}\n</results>\n", error="no_results" if not hits else ""),
            b,
            backend,
        )
    listing = "\n".join(f"[{n}] {p.title}: {p.text[: b.passage_chars]}" for n, p in shown)
    return _tool(
        t,
        Turn(text, "search", query, f"\n<results>\n{listing}\n</results>\n", passage_ids=[p.id for _, p in shown]),
        b,
        backend,
    )


def _read(t: AgentTrajectory, text: str, argument: str, backend: Backend, b: Budget) -> bool:
    found = re.search(r"\d+", argument)
    number = int(found.group()) if found else None
    by_number = {n: p for n, p in t.sources.values()}
    if number not in by_number:
        have = f"1-{len(by_number)}" if by_number else "none yet: search first"
        return _tool(
            t,
            Turn(
                text, "read", argument, _error(f"there is no source [{argument}]; sources: {have}"), error="no_source"
            ),
            b,
            backend,
        )
    p = by_number[number]
    output = f'\n<passage n="{number}">\n{p.title}\n{p.text[: b.read_chars]}\n</passage>\n'
    return _tool(t, Turn(text, "read", argument, output, passage_ids=[p.id]), b, backend)


def _error(message: str) -> str:
    return f"\n<error>{message}</error>\n"


def _tool(t: AgentTrajectory, turn: Turn, b: Budget, backend: Backend) -> bool:
    """Append a tool's turn, its output followed by a reminder of what may come next (no loss on it), and go on."""
    t.turns.append(turn)
    left = b.max_tool_calls - t.tool_calls
    output = (
        turn.output
        + (f"{left} tool call{'s' * (left != 1)} left. " if left else "No tool calls left: write the report now. ")
        + "Cite a source by its number after the sentence it supports, like [1], in <answer></answer>.\n"
    )
    turn.output = output
    t.extend(backend.tokenize(output), written=False)
    return True


def _cut(t: AgentTrajectory, why: str) -> None:
    t.turns.append(Turn("", "cut", why, "", error="over_budget"))
    t.finish = "cut"
