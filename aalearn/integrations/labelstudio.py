"""Label Studio round trip: picked items out as tasks, finished annotations back as labels.

Both directions are keyed by dataset index: every task aalearn creates holds its item's
dataset index in ``task["data"]["aalearn_index"]``, and :meth:`LabelStudioProject.
import_labels` labels exactly those indices in the pool. The client is the standard
library's ``urllib`` (no extra dependency); the server is any Label Studio >= 1.7.

Rules of :meth:`LabelStudioProject.import_labels` (one call reads every task, checks
everything, then makes at most one :meth:`~aalearn.ActivePool.label` call, so an error
leaves the pool unchanged and a re-run after any failure is safe):

- A task with no annotation yet is *pending*; a task whose annotations were all
  skipped (``was_cancelled``) is *skipped*. Both stay unlabeled and are reported.
- Several annotations of one index (several annotators, or the index sent twice) that
  give the same class count once; different classes are a *conflict*: ``ValueError``,
  or with ``on_conflict="skip"`` the index stays unlabeled and is reported.
- An index already labeled in the pool is never labeled twice: with the same label (or
  a pool label of the dataset's own target) it is reported as ``already_labeled``; with
  another label it is a conflict, as above.
- A label name not in ``class_names``, an annotation without exactly one choice, a task
  without a valid ``aalearn_index``: ``ValueError`` naming the task.
- No answer from the server: :class:`LabelStudioConnectionError` naming the URL; an
  error answer: :class:`LabelStudioError` with the status and the server's message.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
import torch

from aalearn._validation import check_number
from aalearn.integrations._images import image_to_data_uri
from aalearn.integrations._labelstudio_http import (
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioHTTP,
)
from aalearn.integrations._labelstudio_rules import (
    CONTROL_NAME,
    INDEX_KEY,
    LabelImport,
    check_class_names,
    check_collect_args,
    collect_labels,
    task_index,
)
from aalearn.pool import ActivePool, IndexLike

__all__ = [
    "INDEX_KEY",
    "LabelImport",
    "LabelStudioConnectionError",
    "LabelStudioError",
    "LabelStudioProject",
    "image_to_data_uri",
    "labeling_config",
]

Kind = Literal["image", "text"]


def _check_kind(kind: Any) -> Kind:
    if kind not in ("image", "text"):
        raise ValueError(f"Expected argument `kind` to be 'image' or 'text', but got {kind!r}.")
    out: Kind = kind
    return out


def labeling_config(class_names: Sequence[str], kind: Kind = "image") -> str:
    """Label Studio's labeling configuration (XML) for one choice among ``class_names``.

    Examples
    --------
    >>> from aalearn.integrations.labelstudio import labeling_config
    >>> print(labeling_config(["cat", "dog"], kind="text"))
    <View>
      <Text name="text" value="$text"/>
      <Choices name="label" toName="text" choice="single" required="true">
        <Choice value="cat"/>
        <Choice value="dog"/>
      </Choices>
    </View>
    """
    names = check_class_names(class_names)
    tag = {"image": "Image", "text": "Text"}[_check_kind(kind)]
    choices = "".join(f"    <Choice value={quoteattr(n)}/>\n" for n in names)
    return (
        f'<View>\n  <{tag} name="{kind}" value="${kind}"/>\n'
        f'  <Choices name="{CONTROL_NAME}" toName="{kind}" choice="single" required="true">\n'
        f"{choices}  </Choices>\n</View>"
    )


def _read_ndarray_indices(indices: IndexLike) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"Expected argument `indices` to be a 1-D array of int, but got dtype {arr.dtype} "
            f"and shape {arr.shape}."
        )
    if arr.size and (int(arr.min()) < 0 or np.unique(arr).size != arr.size):
        raise ValueError(
            f"Expected argument `indices` to hold unique non-negative ints, but got {arr}."
        )
    return arr.astype(np.int64)


class LabelStudioProject:
    """One Label Studio project whose tasks are pool items, addressed by dataset index.

    Parameters
    ----------
    url : str
        The server, e.g. ``"http://localhost:8080"``.
    token : str
        A legacy API token (the server needs ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``
        from 1.17 on) or a personal access token (Account & Settings in the web app).
    project_id : int
        The project's id (:meth:`create` makes a new one).
    class_names : sequence of str
        The choices; class ``k`` of the pool is ``class_names[k]``.
    kind : {"image", "text"}
        What a task shows: ``task["data"]["image"]`` (an image URL) or ``["text"]``.
    timeout : float
        Seconds to wait for each answer of the server.

    Examples
    --------
    Creating the object does not contact the server:

    >>> from aalearn.integrations.labelstudio import LabelStudioProject
    >>> LabelStudioProject("http://localhost:8080", "token", 1, ["cat", "dog"])
    LabelStudioProject('http://localhost:8080', project_id=1, kind='image')
    """

    def __init__(
        self,
        url: str,
        token: str,
        project_id: int,
        class_names: Sequence[str],
        *,
        kind: Kind = "image",
        timeout: float = 60.0,
    ) -> None:
        for name, value in (("url", url), ("token", token)):
            if not isinstance(value, str) or not value:
                raise TypeError(
                    f"Expected argument `{name}` to be a non-empty str, but got {value!r}."
                )
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"Expected argument `url` to start with http:// or https://, but got {url!r}."
            )
        if isinstance(project_id, bool) or not isinstance(project_id, numbers.Integral):
            raise TypeError(f"Expected argument `project_id` to be an int, but got {project_id!r}.")
        self.class_names: tuple[str, ...] = check_class_names(class_names)
        self.kind: Kind = _check_kind(kind)
        self.project_id: int = int(project_id)
        timeout = check_number(timeout, "timeout", minimum=0, exclusive_minimum=True)
        self._http: LabelStudioHTTP = LabelStudioHTTP(url, token, timeout)
        self.url: str = self._http.url

    def __repr__(self) -> str:
        return f"LabelStudioProject({self.url!r}, project_id={self.project_id}, kind={self.kind!r})"

    @classmethod
    def create(
        cls,
        url: str,
        token: str,
        class_names: Sequence[str],
        *,
        kind: Kind = "image",
        title: str = "aalearn",
        timeout: float = 60.0,
    ) -> LabelStudioProject:
        """A new project on the server, with :func:`labeling_config` as its labeling setup."""
        config = labeling_config(class_names, kind)
        probe = cls(url, token, 0, class_names, kind=kind, timeout=timeout)
        answer = probe._http.request(
            "POST", "/api/projects/", {"title": title, "label_config": config}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            raise LabelStudioError(f"Label Studio at {probe.url} created no project: {answer!r}")
        return cls(url, token, answer["id"], class_names, kind=kind, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any other call of Label Studio's REST API, e.g. ``request("GET", "/api/projects/")``.

        The JSON answer, decoded; errors as in :meth:`tasks`. Tests and the example use it
        to post annotations as a scripted annotator.
        """
        return self._http.request(method, path, body)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the project with its annotations (Label Studio's JSON export).

        Raises
        ------
        LabelStudioConnectionError
            No answer from the server (down, unreachable, timed out); names the URL.
        LabelStudioError
            An error answer (HTTP 401 for a refused token, 404 for an unknown project).
        """
        answer = self._http.request(
            "GET",
            f"/api/projects/{self.project_id}/export",
            query={"exportType": "JSON", "download_all_tasks": "true"},
        )
        if not isinstance(answer, list):
            raise LabelStudioError(
                f"Label Studio at {self.url} exported no task list for project "
                f"{self.project_id}: {str(answer)[:200]}"
            )
        return answer

    def send(self, indices: IndexLike, items: Sequence[Any]) -> np.ndarray:
        """Create one task per index not yet in the project; return the indices sent.

        Parameters
        ----------
        indices : array-like of int
            Dataset indices, e.g. a sampler's picks.
        items : sequence
            One item per index, in the same order: a ``str`` (text, or for images a URL
            the annotator's browser can open) or, for images, an array that
            :func:`image_to_data_uri` encodes into the task.

        Returns
        -------
        numpy.ndarray
            The indices sent, in the given order. Indices that already have a task (from
            an earlier, possibly interrupted call) are not sent twice.
        """
        idx = _read_ndarray_indices(indices)
        if isinstance(items, str) or len(items) != idx.size:
            raise ValueError(
                f"Expected argument `items` to hold one item per index ({idx.size}), but got "
                f"{len(items) if not isinstance(items, str) else 'a str'}."
            )
        values = [self._encode(item) for item in items]
        present = {task_index(task, None) for task in self.tasks()}
        keep = [k for k, i in enumerate(idx.tolist()) if i not in present]
        tasks = [{"data": {self.kind: values[k], INDEX_KEY: int(idx[k])}} for k in keep]
        if tasks:
            self._http.request("POST", f"/api/projects/{self.project_id}/import", tasks)
        return idx[keep]

    def _encode(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        if self.kind == "text":
            raise TypeError(f"Expected text items to be str, but got {type(item).__name__}.")
        return image_to_data_uri(item)

    def collect(self, pool: ActivePool, *, on_conflict: str = "raise") -> LabelImport:
        """Read and check every annotation against ``pool`` without changing it.

        :meth:`import_labels` is this followed by one ``pool.label`` call; the rules are
        in the module's docstring.
        """
        check_collect_args(pool, on_conflict)  # before the network
        return collect_labels(self.tasks(), self.class_names, pool, on_conflict)

    def import_labels(self, pool: ActivePool, *, on_conflict: str = "raise") -> LabelImport:
        """Label in ``pool`` every index whose annotation is finished; one ``label`` call.

        Parameters
        ----------
        pool : ActivePool
            The pool whose dataset indices the tasks hold.
        on_conflict : {"raise", "skip"}
            What a conflict does (annotations that disagree, or that disagree with the
            pool's label): ``ValueError``, or leave the index unlabeled and report it.

        Returns
        -------
        LabelImport
            The indices labeled now and the state of every other task.

        Raises
        ------
        ValueError
            A conflict (with ``on_conflict="raise"``), an unknown label name, an
            annotation without exactly one choice, a task without a valid index.
        LabelStudioConnectionError, LabelStudioError
            As :meth:`tasks`. Whatever it raises, the pool is unchanged.
        """
        found = self.collect(pool, on_conflict=on_conflict)
        if found.indices.size:
            pool.label(found.indices, labels=found.labels)
        return found
