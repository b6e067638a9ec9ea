"""Saved activations as aliases: copied only when something could change them.

Saved activations are detached aliases of the live tensors: no copy. Before
a call that writes into a tensor (see :mod:`.inplace`) every saved alias of
that storage is copied (and the node's ``meta["written_later"]`` set to the
capture index the writing call's first node gets; the lean pass reads it). At the end, the version counter of every remaining
alias is compared with the one recorded at save time; a mismatch means
something wrote into a saved tensor unseen, and is reported as a warning
naming the op. Then every alias whose storage is still held outside the
history (the caller's input, a view of a parameter or buffer, a tensor the
model kept) is copied, so writes after the pass cannot reach the history
either.

In a pass that keeps its autograd graph for a later backward
(``save_gradients``) the graph holds most activations' storage, so most
saved values are copied at the end of that pass: a model keeping a tensor, a
loss writing into the output or a backward writing into what it saved can
then change no saved value, whether or not the backward ever runs.
"""

from __future__ import annotations

import warnings

import torch

from ..model_state import tensor_version


class AliasGuard:
    """The saved aliases of one pass, by storage, and their versions at save time."""

    def __init__(self):
        self._by_storage = {}
        self._versions = {}
        self._foreign_storages = set()

    def keep(self, node, tensor):
        """Save ``tensor`` in ``node`` as a detached alias (a copy if it has no storage)."""
        alias = tensor.detach()
        node.tensor_contents = alias
        try:
            storage = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            node.tensor_contents = alias.clone()
            return
        try:
            self._versions[node] = tensor._version
        except RuntimeError:
            self._versions[node] = None
        nodes = self._by_storage.get(storage)
        if nodes is None:
            self._by_storage[storage] = [node]
        else:
            nodes.append(node)

    def protect(self, storages, index):
        """Copy every saved alias of ``storages`` (addresses a call is about to write into).

        The copied nodes get ``meta["written_later"] = index``, the capture
        index of the writing call's first node.
        """
        if not self._by_storage:
            return
        for storage in storages:
            for node in self._by_storage.pop(storage, ()):
                if node in self._versions:
                    node.tensor_contents = node.tensor_contents.clone()
                    node.meta["written_later"] = index
                    del self._versions[node]

    def add_foreign(self, tensor):
        """Mark ``tensor``'s memory as not torch's own (``from_numpy`` & co.)."""
        try:
            self._foreign_storages.add(tensor.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):
            pass

    def settle(self):
        """Close the pass: warn about aliases changed unseen, copy those held outside.

        Call it once the model's output is no longer referenced, so that
        only what outlives the pass still holds the tensors' storage.
        """
        stale = []
        for node, version in self._versions.items():
            if version is not None and tensor_version(node.tensor_contents) not in (version, None):
                stale.append(f"#{node.meta['capture_index']} {node.func_name}")
        if stale:
            warnings.warn(
                "These saved activations were modified in place by a call that was not seen, "
                f"so their saved values may be wrong: {', '.join(stale)}. Please report the "
                "model; meanwhile validate with validate_saved_activations.", RuntimeWarning,
                stacklevel=4)
        self._copy_storage_held_outside()
        self._versions.clear()
        self._by_storage.clear()

    def _copy_storage_held_outside(self):
        """Copy the saved aliases whose storage something outside the history still holds.

        Once the pass is over, a saved alias shares its storage only with other
        saved aliases, unless the storage belongs to the caller's input, a
        parameter or buffer (also through a view such as ``token.expand``), or
        a tensor the model kept. A later write there (an optimizer step, an
        input buffer reused for the next batch) would change the saved value,
        so those aliases become copies. Holders are counted with the storage's
        reference count (one per tensor, plus the storage object asked for it);
        memory torch does not own (``from_numpy``, ``frombuffer``,
        ``from_dlpack``) is always held outside. A raw ``UntypedStorage``
        object kept by the model is not seen.
        """
        use_count = getattr(torch._C, "_storage_Use_Count", None)
        for storage, nodes in self._by_storage.items():
            held = [node for node in nodes if node in self._versions]
            if not held:
                continue
            if storage in self._foreign_storages:
                holders = len(held) + 1
            elif use_count is None:
                continue
            else:
                try:
                    holders = use_count(held[0].tensor_contents.untyped_storage()._cdata) - 1
                except (RuntimeError, NotImplementedError, AttributeError):
                    continue
            if holders > len(held):
                _copy_together(held)
                for node in held:
                    del self._versions[node]


def _copy_together(nodes):
    """Copy the saved aliases of one storage, keeping them aliases of one another.

    When together they are at least as large as the storage (views of one
    activation: a reshape, a transpose, the heads of a split), the storage is
    copied once and each alias rebuilt on the copy; otherwise (a slice of a
    larger tensor) each is copied alone.
    """
    tensors = [node.tensor_contents for node in nodes]
    try:
        storage = tensors[0].untyped_storage()
        shared = len(nodes) > 1 and tensors[0].device.type != "meta" \
            and storage.nbytes() <= sum(t.nbytes for t in tensors)
        if shared:
            copy = storage.clone()
            rebuilt = [torch.empty(0, dtype=t.dtype, device=t.device).set_(
                copy, t.storage_offset(), t.shape, t.stride()) for t in tensors]
    except (RuntimeError, NotImplementedError, TypeError):
        shared = False
    if not shared:
        rebuilt = [t.clone() for t in tensors]
    for node, tensor in zip(nodes, rebuilt):
        node.tensor_contents = tensor

