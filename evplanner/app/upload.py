"""The file choosers (stations, candidate sites): a size limit that holds in the
browser.

Panel's ``FileInput`` (Bokeh's) reads any chosen file whole and sends it over the
session's websocket; the app could only check the size after the whole file had
arrived, and a file above the server's websocket message limit closed the
connection, which killed the page without a word. :class:`FileUpload` checks
the size in the browser first: a file over the limit is never read nor sent, the
widget says why under the chooser, and the server is told only the name and size
(so the page's alert says it too). Files within the limit are sent as one message
(base64), which :data:`WEBSOCKET_MAX_MESSAGE_BYTES` leaves room for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import param
from panel.custom import JSComponent

from evplanner.app.engine import MAX_UPLOAD_BYTES

__all__ = ["WEBSOCKET_MAX_MESSAGE_BYTES", "FileUpload"]

#: The server's websocket message limit (``panel serve
#: --websocket-max-message-size``): an upload at :data:`MAX_UPLOAD_BYTES` is one
#: message of 4/3 of its size (base64), and nothing else the page sends comes near
#: it. Bokeh's default is 20 MB; a client that sends more is disconnected by
#: Tornado before the message is read whole.
WEBSOCKET_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class FileUpload(JSComponent):
    """A file chooser that refuses files over ``max_bytes`` in the browser.

    One class for every upload of the app (the stations, the candidate sites),
    so that each has the same limit, the same messages and the same checks.

    Parameters
    ----------
    label : str
        Text above the chooser.
    max_bytes : int
        Largest file sent to the server, in bytes.
    accept : str
        File types offered by the browser's dialog (the server checks again).
    kind : str
        What the chooser uploads, set as the file input's ``data-upload``
        attribute (``"stations"``, ``"candidates"``) so that a page can be told
        which chooser is which.
    on_file : callable(bytes, str)
        Called on the server with a chosen file's content and name.
    on_refused : callable(str, int)
        Called on the server with the name and size in bytes of a file the browser
        refused as too large (nothing of it was sent).
    """

    label = param.String(default="Upload stations CSV")
    max_bytes = param.Integer(default=MAX_UPLOAD_BYTES, bounds=(1, None))
    accept = param.String(default=".csv,text/csv")
    kind = param.String(default="stations")

    _esm = """
    export function render({ model, el }) {
      const label = document.createElement("label");
      label.className = "file-upload-label";
      label.textContent = model.label;
      const input = document.createElement("input");
      input.type = "file";
      input.accept = model.accept;
      input.className = "bk-input";
      input.dataset.upload = model.kind;
      const note = document.createElement("div");
      note.className = "file-upload-note";
      note.setAttribute("role", "status");
      label.appendChild(input);
      el.append(label, note);
      const mb = (n) => (n / 1e6).toFixed(1) + " MB";
      input.addEventListener("change", () => {
        const file = input.files && input.files[0];
        if (!file) return;
        input.value = "";  // choosing the same file again is a new upload
        if (file.size > model.max_bytes) {
          // Never read nor sent: the server only learns the name and size.
          note.textContent = `${file.name} is ${mb(file.size)}, larger than the ` +
                             `${mb(model.max_bytes)} limit; it was not uploaded.`;
          model.send_msg({refused: file.name, size: file.size});
          return;
        }
        note.textContent = `Uploading ${file.name}…`;
        const reader = new FileReader();
        reader.onload = () => {
          const url = String(reader.result || "");
          note.textContent = "";
          model.send_msg({name: file.name, size: file.size,
                          data: url.slice(url.indexOf(",") + 1)});
        };
        reader.onerror = () => {
          note.textContent = `${file.name} could not be read.`;
        };
        reader.readAsDataURL(file);
      });
    }
    """

    _stylesheets = [  # noqa: RUF012 - Panel's own class attribute
        """
        .file-upload-label { display: flex; flex-direction: column; gap: 4px;
                             font-size: 0.9em; }
        .file-upload-note { color: #a61b1b; font-size: 0.85em; min-height: 1em; }
        """
    ]

    def __init__(
        self,
        on_file: Callable[[bytes, str], None],
        on_refused: Callable[[str, int], None],
        **params,
    ):
        super().__init__(**params)
        self._on_file, self._on_refused = on_file, on_refused

    def _handle_msg(self, msg) -> None:
        # The browser is not trusted: a client that skips its size check still
        # cannot hand more than max_bytes to the parser (and never more than the
        # websocket limit to the server).
        if not isinstance(msg, dict):
            return
        name = str(msg.get("name") or msg.get("refused") or "upload.csv")
        if "refused" in msg:
            self._on_refused(name, int(msg.get("size") or 0))
            return
        text = msg.get("data")
        if not isinstance(text, str) or len(text) > (self.max_bytes + 2) // 3 * 4:
            size = len(text) * 3 // 4 if isinstance(text, str) else 0
            self._on_refused(name, size)
            return
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        self._on_file(data, name)
