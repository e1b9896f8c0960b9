"""Static assets of the review page: the first screen's hint, the keyboard-shortcut table, the script that binds the keys,
and the CSS.

The script clicks the page's buttons (``#btn-*`` element ids) and the click-tool radio (``#tool``), so a key
does exactly what its button does; keys are ignored while the user types in a text field.
"""

SHORTCUTS = """
| Key | Action |
|---|---|
| **S** / **P** / **N** / **B** | tool: select / add point / remove point / box |
| **A** | accept and go to the next image |
| **R** | reject image |
| **D** or **Delete** | delete selected instance |
| **M** | merge selected with the instance picked in "Merge with" |
| **Z** or **Ctrl+Z** | undo |
| **Y** or **Ctrl+Shift+Z** | redo |
| **Esc** | deselect |
| **←** / **→** | previous / next image |
"""

START_HINT = (
    "**Start here:** pick an image in the queue (least confident first; ⚠ marks automatic labels to check). "
    "Click the photo with **Add +** to grow an instance of the class chosen on the right, **Remove −** to cut "
    "a wrong part away, or **Box** for two corners; the brush fixes the last pixels. **A** accepts the image and "
    "opens the next one. Every edit is saved at once. **Automatic labelling** labels new images in the "
    "background while you review."
)
"""The first screen's short guide (shown above the page)."""

SHORTCUTS_JS = """
() => {
  if (window.__dhrShortcuts) { return; }
  window.__dhrShortcuts = true;
  const click = (id) => { const el = document.getElementById(id); if (el) { el.click(); } };
  const tool = (value) => {
    const el = document.querySelector('#tool input[value="' + value + '"]');
    if (el) { el.click(); }
  };
  document.addEventListener('keydown', (event) => {
    const t = event.target;
    const tag = t && t.tagName ? t.tagName.toLowerCase() : '';
    const typing = tag === 'textarea' || tag === 'select' || (t && t.isContentEditable) ||
      (tag === 'input' && !['radio', 'checkbox', 'range', 'button'].includes(t.type));
    if (typing || event.altKey || event.metaKey) { return; }
    const key = event.key.toLowerCase();
    let action = null;
    if (event.ctrlKey) {
      if (key === 'z' && !event.shiftKey) { action = () => click('btn-undo'); }
      else if (key === 'y' || (key === 'z' && event.shiftKey)) { action = () => click('btn-redo'); }
    } else {
      const table = {
        's': () => tool('select'), 'p': () => tool('positive'), 'n': () => tool('negative'),
        'b': () => tool('box'), 'a': () => click('btn-accept'),
        'r': () => click('btn-reject'), 'd': () => click('btn-delete'), 'delete': () => click('btn-delete'),
        'm': () => click('btn-merge'), 'z': () => click('btn-undo'), 'y': () => click('btn-redo'),
        'escape': () => click('btn-deselect'), 'arrowleft': () => click('btn-prev'),
        'arrowright': () => click('btn-next'),
      };
      action = table[key] || null;
    }
    if (action) { event.preventDefault(); action(); }
  });
}
"""

CSS = """
#canvas img { cursor: crosshair; }
#segmenter-status.fallback { border-left: 4px solid #e67e22; padding-left: 8px; }
#message { min-height: 1.6em; }
#shortcuts, #shortcuts table { font-size: 0.8em; }
#instances table, #queue table { font-size: 0.85em; }
#shortcuts td, #shortcuts th { padding: 2px 6px; }
"""
