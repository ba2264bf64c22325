"""ComfyUI glue for finding and downloading official Hyper-SD files: model folders, progress, interrupt."""
import logging

import comfy.model_management
import comfy.utils
import folder_paths

from ..core import download

log = logging.getLogger("HyperSD")

POLICY_IF_MISSING = "if missing"
POLICY_NEVER = "never"
POLICIES = [POLICY_IF_MISSING, POLICY_NEVER]
POLICY_TOOLTIP = ("'if missing': download the official file from Hugging Face (ByteDance/Hyper-SD) into the "
                  "first models folder when it is not found on disk (HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE "
                  "are honoured). 'never': only use a file already on disk.")


def model_folders(*folder_names):
    """Every configured folder for the given ComfyUI folder names (extra_model_paths.yaml included)."""
    folders = []
    for name in folder_names:
        try:
            paths = folder_paths.get_folder_paths(name)
        except KeyError:
            continue
        folders += [p for p in paths if p not in folders]
    return folders


def locate(entry, policy, also=()):
    """Path of the official file ``entry``: found on disk first, else downloaded (policy 'if missing').

    Searched in every folder of ``entry.folder`` and of the folder names in ``also``; the download goes to
    the first folder of ``entry.folder``, shows bytes in ComfyUI's progress bar and stops when
    the user presses Cancel (ComfyUI's interrupt exception propagates; the bytes so far stay in the hidden
    ``.<name>.<sha256>.partial``, which ComfyUI does not list, and the next run resumes them).
    The folders are walked once: on a miss, ``download.fetch`` only looks at the destination file itself
    (another ComfyUI process sharing the folder may be placing it; the download waits for that one).
    """
    folders = model_folders(entry.folder, *also)
    if not folders:
        raise download.DownloadError(f"[Hyper-SD] ComfyUI has no '{entry.folder}' folder configured for "
                                     f"{entry.filename}", filename=entry.filename, url=entry.url)
    found = download.find_local(entry.filename, folders)
    if found is not None:
        return found
    if policy == POLICY_NEVER:
        raise download.not_found_error(entry, folders[0], folders,
                                       "it is not on disk and the download policy is 'never' (set it to "
                                       "'if missing' to download it)")
    dest = folders[0]
    bar = comfy.utils.ProgressBar(entry.approx_bytes)
    log.info("[Hyper-SD] downloading %s into %s", entry.filename, dest)

    def progress(done, total):
        bar.update_absolute(done, total)

    def should_stop():
        comfy.model_management.throw_exception_if_processing_interrupted()
        return False

    return download.fetch(entry, dest, folders, progress=progress, should_stop=should_stop)
