"""Posting the PR comment, against a fake GitHub API on 127.0.0.1: the request GitHub
documents (path, headers, JSON body), and an error that says what to do for each refusal
and for a network failure, never showing the token."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from streams.cli.github_comment import (
    API_VERSION,
    MAX_BODY_CHARS,
    GitHubCommentError,
    post_pr_comment,
)
from tests.fakes.github import FakeGitHub

TOKEN = "ghp_test-token-0123456789"
BODY = "## Meta-supervisor report\n\n**Severity: normal** · naïve ✓\n"


def test_the_comment_is_posted_as_the_rest_api_documents_it(github: FakeGitHub) -> None:
    address = "https://github.com/octo-org/octo-repo/pull/7#issuecomment-1"
    github.answer = {"id": 1, "html_url": address}

    posted = post_pr_comment(github.url, "octo-org/octo-repo", 7, TOKEN, BODY)

    assert posted == address
    ((path, headers, body),) = github.requests
    assert path == "/repos/octo-org/octo-repo/issues/7/comments"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == API_VERSION == "2022-11-28"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"body": BODY}


def test_an_enterprise_api_address_keeps_its_path(github: FakeGitHub) -> None:
    post_pr_comment(f"{github.url}/api/v3/", "octo-org/octo-repo", 12, TOKEN, BODY)
    assert github.requests[0][0] == "/api/v3/repos/octo-org/octo-repo/issues/12/comments"


@pytest.mark.parametrize(
    "status, answer, says",
    [
        (401, {"message": "Bad credentials"}, "refused the token (401: Bad credentials)"),
        (403, {"message": "Resource not accessible"}, "may not write comments on octo-org/r"),
        (404, {"message": "Not Found"}, "no pull request #7 in octo-org/r (404: Not Found)"),
        (
            422,
            {"message": "Validation Failed", "errors": [{"code": "invalid"}]},
            "refused the comment as invalid (422: Validation Failed [{'code': 'invalid'}])",
        ),
        (502, {}, "GitHub answered 502"),
    ],
)
def test_each_refusal_says_what_it_means_and_never_shows_the_token(
    github: FakeGitHub, status: int, answer: dict[str, Any], says: str
) -> None:
    github.status, github.answer = status, answer
    with pytest.raises(GitHubCommentError) as refused:
        post_pr_comment(github.url, "octo-org/r", 7, TOKEN, BODY)
    assert says in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_a_network_failure_says_the_api_could_not_be_reached() -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GitHubCommentError, match="could not reach the GitHub API at http"):
        post_pr_comment(f"http://127.0.0.1:{port}", "octo-org/r", 7, TOKEN, BODY, timeout_s=5)


@pytest.mark.parametrize(
    "repo, number, token, body, says",
    [
        ("octo-org", 7, TOKEN, BODY, "not of the form owner/name"),
        ("octo-org/../../admin", 7, TOKEN, BODY, "not of the form owner/name"),
        ("octo-org/r", 0, TOKEN, BODY, "must be 1 or more"),
        ("octo-org/r", 7, "", BODY, "no GitHub token"),
        ("octo-org/r", 7, TOKEN, "  \n", "the comment is empty"),
        ("octo-org/r", 7, TOKEN, "x" * (MAX_BODY_CHARS + 1), "over GitHub's 65,536"),
    ],
)
def test_what_github_would_refuse_is_refused_before_sending(
    github: FakeGitHub, repo: str, number: int, token: str, body: str, says: str
) -> None:
    with pytest.raises(GitHubCommentError, match=says):
        post_pr_comment(github.url, repo, number, token, body)
    assert github.requests == []
