"""Posting the PR comment on GitHub: the reports' one side effect, kept here at the edge.

The comment itself is `projections.reports.pr_comment`, a pure function of the log; this
module only sends it, through the REST API (`POST /repos/{owner}/{repo}/issues/{number}/
comments`: a pull request is an issue for comments). On GitHub Enterprise the API lives
under the server's `/api/v3`, hence `api_url`. The token never appears in an error.
"""

from __future__ import annotations

import re
from typing import Final

import requests

DEFAULT_API_URL: Final = "https://api.github.com"
API_VERSION: Final = "2022-11-28"
# GitHub refuses a comment body over 65,536 characters (422); said before sending instead.
MAX_BODY_CHARS: Final = 65_536
TIMEOUT_S: Final = 30.0
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class GitHubCommentError(RuntimeError):
    """The comment was not posted; the message says why and what to do."""


def comments_url(api_url: str, repo: str, pr_number: int) -> str:
    """Where a comment on pull request `pr_number` of `repo` ("owner/name") is posted."""
    owner, _, name = repo.partition("/")
    if not _OWNER.fullmatch(owner) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise GitHubCommentError(
            f"repository {repo!r} is not of the form owner/name (e.g. octo-org/octo-repo)"
        )
    if pr_number < 1:
        raise GitHubCommentError(f"pull request number {pr_number} must be 1 or more")
    return f"{api_url.rstrip('/')}/repos/{owner}/{name}/issues/{pr_number}/comments"


def post_pr_comment(
    api_url: str,
    repo: str,
    pr_number: int,
    token: str,
    body: str,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """Post `body` as a comment on the pull request; returns the comment's web address."""
    url = comments_url(api_url, repo, pr_number)
    if not token:
        raise GitHubCommentError(
            "no GitHub token: give one with permission to write pull-request comments "
            "(fine-grained: Pull requests read and write; classic: repo)"
        )
    if not body.strip():
        raise GitHubCommentError("the comment is empty: nothing to post")
    if len(body) > MAX_BODY_CHARS:
        raise GitHubCommentError(
            f"the comment has {len(body):,} characters, over GitHub's {MAX_BODY_CHARS:,}: "
            "post the report as a file instead (--out)"
        )
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    try:
        response = requests.post(url, json={"body": body}, headers=headers, timeout=timeout_s)
    except requests.RequestException as error:
        raise GitHubCommentError(
            f"could not reach the GitHub API at {api_url} ({type(error).__name__}): check the "
            "network, a proxy, or the API address (GitHub Enterprise: https://HOST/api/v3)"
        ) from error
    if response.status_code == 201:
        return str(_json(response).get("html_url", ""))
    raise GitHubCommentError(_refusal(response, repo, pr_number))


def _json(response: requests.Response) -> dict[str, object]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _refusal(response: requests.Response, repo: str, pr_number: int) -> str:
    """What GitHub's answer means, and what to do about it."""
    answer = _json(response)
    said = str(answer.get("message") or response.reason or "no message")
    errors = answer.get("errors")
    if errors:
        said += f" {errors}"
    status = response.status_code
    if status == 401:
        return (
            f"GitHub refused the token (401: {said}): it is wrong, expired or revoked; "
            "create a new one and pass it again"
        )
    if status == 403:
        return (
            f"GitHub forbade the comment (403: {said}): the token may not write comments on "
            f"{repo} (fine-grained: Pull requests read and write; classic: repo), or a rate "
            "limit was hit (wait and retry)"
        )
    if status == 404:
        return (
            f"GitHub found no pull request #{pr_number} in {repo} (404: {said}): check the "
            "repository and the number; a private repository also answers 404 to a token "
            "that cannot see it"
        )
    if status == 422:
        return (
            f"GitHub refused the comment as invalid (422: {said}): the pull request may be "
            "locked, or the body too long or malformed"
        )
    return f"GitHub answered {status} ({said}): retry later, or check the API address"
