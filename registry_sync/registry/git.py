"""A thin, typed wrapper over the `git` command; git failures become RegistryErrors here."""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from registry_sync.errors import (
    GitCommandError,
    NotARegistryError,
    RegistryError,
    UnsafePackageError,
)

__all__ = [
    "DanglingRef",
    "Git",
    "Signing",
    "TagListing",
    "TagRecord",
    "ensure_repo",
    "redact_url",
]

_FIELD, _RECORD = "\x1f", "\x1e"
_TAG_FORMAT = (
    "%1f".join(
        [
            "%(refname:strip=2)",
            "%(objecttype)",
            "%(*objecttype)",
            "%(*objectname)",
            "%(taggername)",
            "%(taggeremail:trim)",
            "%(taggerdate:unix)",
            "%(*committerdate:unix)",
            "%(objectname)",
            "%(tag)",
            "%(contents:signature)",
            "%(contents)",
        ]
    )
    + "%1e"
)
# Used when neither the environment nor git config names anyone, so that a registry write
# works on a fresh machine or in CI.
_FALLBACK_NAME, _FALLBACK_EMAIL = "stageserve", "stageserve@localhost"
_TIMEOUT_S = 300
# Full ref names per `for-each-ref` call when listing around a dangling ref (argv stays small).
_REFS_PER_CALL = 500


@dataclass(frozen=True, slots=True)
class Signing:
    """How to sign a tag: git's own signing (user.signingkey and gpg.format unless given)."""

    key: str | None = None
    """An SSH key file (or its public key) or an OpenPGP key id; default user.signingkey."""
    format: str | None = None
    """"ssh" or "openpgp"; default gpg.format."""


@dataclass(frozen=True, slots=True)
class TagRecord:
    """An annotated tag that points at a commit (gto ignores lightweight tags)."""

    name: str
    commit: str
    tagger: str
    tagger_email: str
    time: int
    commit_time: int
    message: str
    object: str = ""
    """The tag object's id (what a signature covers; another id once rewritten)."""
    tag_name: str = ""
    """The name written inside the tag object (a copy under another ref name keeps it)."""
    signed: bool = False


@dataclass(frozen=True, slots=True)
class DanglingRef:
    """A tag whose ref points at an object the repository does not have (a push cut short, a
    damaged mirror): skipped when reading, reported by `registry check` and the sync."""

    name: str
    object: str


@dataclass(frozen=True, slots=True)
class TagListing:
    records: list[TagRecord]
    dangling: list[DanglingRef]


def redact_url(url: str) -> str:
    """The URL with any password or token replaced, safe to print and log: the user info
    (`user:***@`, or `***@` when it is one word, often a token) and every query value
    (`?private_token=***`). The user info ends at the last `@` before the path, so a raw `@`,
    `?` or `#` in a password is redacted too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a path, or scp-like `user@host:path` (ssh: no password in it)
    slash = rest.find("/")
    authority, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    user_part = ""
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        user_part = f"{user}:***@" if ":" in userinfo else "***@"
    rest = authority + path
    before, qmark, query = rest.partition("?")
    if qmark:
        query, hash_mark, fragment = query.partition("#")
        names = [pair.split("=", 1)[0] for pair in query.split("&")]
        query = "&".join(f"{name}=***" if name else "" for name in names)
        rest = f"{before}?{query}{hash_mark}{fragment}"
    return f"{scheme}://{user_part}{rest}"


class Git:
    """`git -C path ...`: every call is one subprocess; nothing is cached here."""

    def __init__(self, path: Path, *, display: str | None = None) -> None:
        self.path = path
        self.display = display or str(path)

    def run(
        self,
        *args: str,
        input_bytes: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> str:
        return self.run_bytes(*args, input_bytes=input_bytes, env=env, ok_codes=ok_codes).decode(
            "utf-8", "replace"
        )

    def run_bytes(
        self,
        *args: str,
        input_bytes: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> bytes:
        full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
        try:
            done = subprocess.run(
                ["git", "-C", str(self.path), *args],
                input=input_bytes,
                capture_output=True,
                env=full_env,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as exc:
            raise NotARegistryError(self.display, "git is not installed") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitCommandError(self.display, args[0], "timed out") from exc
        if done.returncode not in ok_codes:
            stderr = done.stderr.decode("utf-8", "replace").strip()
            if "not a git repository" in stderr or "cannot change to" in stderr:
                raise NotARegistryError(self.display)
            raise GitCommandError(self.display, args[0], stderr or f"exit {done.returncode}")
        return done.stdout

    # -- reading ---------------------------------------------------------------------------

    def git_dir(self) -> Path:
        return Path(self.run("rev-parse", "--absolute-git-dir").strip())

    def is_bare(self) -> bool:
        return self.run("rev-parse", "--is-bare-repository").strip() == "true"

    def head(self) -> str | None:
        out = self.run("rev-parse", "--verify", "-q", "HEAD^{commit}", ok_codes=(0, 1)).strip()
        return out or None

    def head_at(self, unix_s: int) -> str | None:
        """The newest first-parent commit of HEAD committed before the second `unix_s`."""
        if self.head() is None:
            return None
        out = self.run("rev-list", "-1", "--first-parent", f"--until={unix_s - 1}", "HEAD")
        return out.strip() or None

    def head_branch(self) -> str | None:
        """The branch HEAD points at (unborn in an empty repository); None when detached."""
        return self.run("symbolic-ref", "-q", "HEAD", ok_codes=(0, 1)).strip() or None

    def tags(self) -> list[TagRecord]:
        """Every annotated tag on a commit; tags whose object is missing are left out."""
        return self.tag_listing().records

    def tag_listing(self) -> TagListing:
        """The annotated tags, and the tags that point at a missing object.

        One `for-each-ref` normally; git refuses the whole listing when one ref is dangling,
        so then the bad refs are found (`cat-file --batch-check` on each tag, peeled) and
        the others listed by name.
        """
        try:
            out = self.run("for-each-ref", f"--format={_TAG_FORMAT}", "refs/tags")
        except GitCommandError as exc:
            if "missing object" not in exc.reason:
                raise
            return self._listing_around_dangling()
        return TagListing(_parse_tags(out), [])

    def _listing_around_dangling(self) -> TagListing:
        refs = self.run("for-each-ref", "--format=%(refname) %(objectname)", "refs/tags")
        pairs = [line.split(" ", 1) for line in refs.splitlines() if " " in line]
        stdin = "".join(f"{ref}^{{}}\n" for ref, _ in pairs).encode()
        checked = self.run("cat-file", "--batch-check", input_bytes=stdin).splitlines()
        good: list[str] = []
        dangling: list[DanglingRef] = []
        for (ref, oid), line in zip(pairs, checked, strict=True):
            if line.endswith(" missing"):
                dangling.append(DanglingRef(ref.removeprefix("refs/tags/"), oid))
            else:
                good.append(ref)
        records: dict[str, TagRecord] = {}
        for start in range(0, len(good), _REFS_PER_CALL):
            chunk = good[start : start + _REFS_PER_CALL]
            # A pattern also matches the refs below it (`a` matches `a/b`): keep each once.
            for record in _parse_tags(self.run("for-each-ref", f"--format={_TAG_FORMAT}", *chunk)):
                records[record.name] = record
        return TagListing(sorted(records.values(), key=lambda r: r.name), dangling)

    def tag_names(self) -> list[str]:
        return self.run("for-each-ref", "--format=%(refname:strip=2)", "refs/tags").split()

    def commit_time(self, rev: str) -> int:
        return int(self.run("show", "-s", "--format=%ct", rev).strip())

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The bytes of `path` at `commit`, or None when the commit has no such file."""
        try:
            return self.run_bytes("cat-file", "blob", f"{commit}:{path}")
        except GitCommandError:
            return None

    def export(self, commit: str, path: str, dest: Path) -> None:
        """Write the files under `path` at `commit` into `dest` (the prefix `path/` removed).

        The archive is streamed from git into the folder: a large artifact never sits in memory.
        """
        root = path.strip("/") in ("", ".")
        prefix = "" if root else path.rstrip("/") + "/"
        args = ["git", "-C", str(self.path), "archive", "--format=tar", commit]
        args += [] if root else ["--", path]
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
            assert process.stdout is not None
            try:
                with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                    for member in archive:
                        if not member.name.startswith(prefix) or member.isdir():
                            continue
                        member.name = member.name[len(prefix) :]
                        # "data" refuses absolute paths, links out of dest and device files.
                        archive.extract(member, dest, filter="data")
            except tarfile.FilterError as exc:
                # A registry writer's symlink out of the package: this package's problem only.
                raise UnsafePackageError(path, _filter_reason(exc)) from None
            except tarfile.ReadError:
                pass  # git failed before writing a tar: reported below
            finally:
                # tarfile stops at the end-of-archive blocks; git may still be writing the
                # record padding after them, and closing the pipe then kills it (SIGPIPE,
                # exit -13): read to the end first.
                while process.stdout.read(1 << 16):
                    pass
                process.stdout.close()
                code = process.wait(timeout=_TIMEOUT_S)
            if code != 0:
                stderr.seek(0)
                reason = stderr.read().decode("utf-8", "replace").strip()
                raise GitCommandError(self.display, "archive", reason or f"exit {code}")

    # -- writing ---------------------------------------------------------------------------

    def identity_env(self) -> dict[str, str]:
        """Author/committer variables to add: only those git could not work out by itself."""
        env: dict[str, str] = {}
        for role in ("AUTHOR", "COMMITTER"):
            for key, config, fallback in (
                ("NAME", "user.name", _FALLBACK_NAME),
                ("EMAIL", "user.email", _FALLBACK_EMAIL),
            ):
                var = f"GIT_{role}_{key}"
                if var not in os.environ and not self._config(config):
                    env[var] = fallback
        return env

    def _config(self, key: str) -> str:
        return self.run("config", "--get", key, ok_codes=(0, 1)).strip()

    def now(self) -> int:
        """The committer time git would record now (honours GIT_COMMITTER_DATE)."""
        ident = self.run("var", "GIT_COMMITTER_IDENT", env=self.identity_env()).split()
        return int(ident[-2])

    def write_commit(
        self,
        parent: str | None,
        *,
        replace_dir: str,
        files: Mapping[str, Path],
        blobs: Mapping[str, bytes],
        remove: Sequence[str] = (),
        message: str,
    ) -> str:
        """A commit of `parent`'s tree with `replace_dir` replaced by `files` and `blobs`
        written; the user's index and work tree are not touched."""
        with tempfile.TemporaryDirectory(prefix="stageserve-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **self.identity_env()}
            self.run("read-tree", *([parent] if parent else ["--empty"]), env=env)
            for path in [replace_dir, *remove]:
                self.run("rm", "--cached", "-r", "-q", "--ignore-unmatch", "--", path, env=env)
            entries = []
            if files:
                stdin = "\n".join(str(p) for p in files.values()).encode()
                shas = self.run("hash-object", "-w", "--stdin-paths", input_bytes=stdin).split()
                for (target, source), sha in zip(files.items(), shas, strict=True):
                    mode = "100755" if os.access(source, os.X_OK) else "100644"
                    entries.append(f"{mode} {sha}\t{target}")
            for target, data in blobs.items():
                sha = self.run("hash-object", "-w", "--stdin", input_bytes=data).strip()
                entries.append(f"100644 {sha}\t{target}")
            if entries:
                info = ("\n".join(entries) + "\n").encode()
                self.run("update-index", "--index-info", input_bytes=info, env=env)
            tree = self.run("write-tree", env=env).strip()
            parents = ["-p", parent] if parent else []
            return self.run("commit-tree", tree, *parents, "-m", message, env=env).strip()

    def update_branch(self, branch: str, new: str, old: str | None) -> None:
        self.run("update-ref", "-m", "stageserve registry", branch, new, old or "0" * 40)

    def reset_branch(self, branch: str, old: str | None) -> None:
        """Put `branch` back where it was (delete it when it did not exist)."""
        if old is None:
            self.run("update-ref", "-d", branch)
        else:
            self.run("update-ref", branch, old)

    def sync_worktree(self, paths: Sequence[str]) -> None:
        """After a commit made with `write_commit`, bring these paths of the index and work
        tree to HEAD (files the new commit dropped are removed)."""
        self.run("reset", "-q", "HEAD", "--", *paths, ok_codes=(0, 1))
        top = Path(self.run("rev-parse", "--show-toplevel").strip())
        for path in paths:
            target = top / path
            if target.is_dir():
                for child in sorted(target.rglob("*"), reverse=True):
                    if child.is_file() or child.is_symlink():
                        child.unlink()
                    elif child.is_dir():
                        child.rmdir()
        listed = self.run("ls-tree", "-r", "--name-only", "HEAD", "--", *paths).split("\n")
        if any(listed):
            self.run("checkout", "HEAD", "--", *paths)

    def create_tag(
        self, name: str, commit: str, message: str, time: int, sign: Signing | None = None
    ) -> None:
        """An annotated tag; with `sign`, signed by git (`tag -s`, SSH or OpenPGP)."""
        env = {**self.identity_env(), "GIT_COMMITTER_DATE": f"@{time} +0000"}
        if sign is None:
            self.run("tag", "-a", name, commit, "-m", message, env=env)
            return
        config = ["-c", f"gpg.format={sign.format}"] if sign.format else []
        key = ["-u", sign.key] if sign.key else []
        self.run(*config, "tag", "-s", *key, name, commit, "-m", message, env=env)

    def delete_tag(self, name: str) -> None:
        self.run("tag", "-d", name)


def _parse_tags(out: str) -> list[TagRecord]:
    records = []
    for raw in out.split(_RECORD):
        fields = raw.lstrip("\n").split(_FIELD)
        if len(fields) != 12 or fields[1] != "tag" or fields[2] != "commit":
            continue
        name, _, _, commit, tagger, email, time, commit_time, obj, inner, sig, text = fields
        # The message without its signature block (which %(contents) ends with).
        message = text[: len(text) - len(sig)] if sig and text.endswith(sig) else text
        records.append(
            TagRecord(
                name,
                commit,
                tagger,
                email,
                int(time or 0),
                int(commit_time or 0),
                message,
                object=obj,
                tag_name=inner,
                signed=bool(sig.strip()),
            )
        )
    return records


def _filter_reason(exc: tarfile.FilterError) -> str:
    """tarfile's refusal, naming the file by its path in the package (not in the archive)."""
    member = exc.tarinfo
    if member.issym() or member.islnk():
        return f"{member.name!r} is a link to {member.linkname!r}, outside the package"
    return str(exc)


def ensure_repo(git: Git) -> None:
    """Raise NotARegistryError unless `git.path` is inside a git repository."""
    if not git.path.exists():
        raise NotARegistryError(git.display, "no such folder")
    try:
        git.git_dir()
    except RegistryError as exc:
        if isinstance(exc, NotARegistryError):
            raise
        raise NotARegistryError(git.display, str(exc)) from exc
