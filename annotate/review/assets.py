"""Static assets of the review page: the first screen's hint, the keyboard-shortcut table, the script that binds the keys,
and the CSS.

The script clicks the page's buttons (``#btn-*`` element ids) and the click-tool radio (``#tool``), so a key
does exactly what its button does. Keys typed into a field (text, number, slider, dropdown) or pressed in the
brush editor and its menus never act on the page; on a focused radio button or checkbox the arrow keys and
the space bar keep their own meaning. The script also scrolls the selected instance's row ("▶") into view.
"""

SHORTCUTS = """
| Key | Action |
|---|---|
| **S** / **P** / **N** / **B** / **G** | tool: select / add point / remove point / box / merge pick |
| **A** | accept and go to the next image |
| **R** | reject and go to the next image |
| **D** or **Delete** | delete selected instance |
| **M** | merge selected with the instance picked in "Merge with" |
| **Z** or **Ctrl+Z** | undo the last label edit (never a status) |
| **Y** or **Ctrl+Shift+Z** | redo it |
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
  const OWN_KEYS = ['arrowleft', 'arrowright', 'arrowup', 'arrowdown', ' ', 'home', 'end', 'pageup', 'pagedown'];
  // Whether a key pressed on element t belongs to that element rather than to the page.
  window.__dhrKeyIsLocal = (t, key) => {
    if (!t || !t.tagName) { return false; }
    const tag = t.tagName.toLowerCase();
    if (t.closest && t.closest('#editor, [role="dialog"], [role="menu"], [role="listbox"], [role="slider"]')) {
      return true;
    }
    if (tag === 'textarea' || tag === 'select' || t.isContentEditable) { return true; }
    if (tag === 'input') {
      if (['radio', 'checkbox', 'button'].includes(t.type)) { return OWN_KEYS.includes(key); }
      return true;  // text, number, range (the opacity slider), search...
    }
    return false;
  };
  document.addEventListener('keydown', (event) => {
    const key = event.key.toLowerCase();
    if (window.__dhrKeyIsLocal(event.target, key) || event.altKey || event.metaKey) { return; }
    let action = null;
    if (event.ctrlKey) {
      if (key === 'z' && !event.shiftKey) { action = () => click('btn-undo'); }
      else if (key === 'y' || (key === 'z' && event.shiftKey)) { action = () => click('btn-redo'); }
    } else {
      const table = {
        's': () => tool('select'), 'p': () => tool('positive'), 'n': () => tool('negative'),
        'b': () => tool('box'), 'g': () => tool('merge'), 'a': () => click('btn-accept'),
        'r': () => click('btn-reject'), 'd': () => click('btn-delete'), 'delete': () => click('btn-delete'),
        'm': () => click('btn-merge'), 'z': () => click('btn-undo'), 'y': () => click('btn-redo'),
        'escape': () => click('btn-deselect'), 'arrowleft': () => click('btn-prev'),
        'arrowright': () => click('btn-next'),
      };
      action = table[key] || null;
    }
    if (action) { event.preventDefault(); action(); }
  });
  // Bring the selected instance's row into sight when the selection changes (a pick on the canvas, a merge...).
  let pending = false;
  let shown = '';
  const reveal = () => {
    pending = false;
    const cells = document.querySelectorAll('#instances td, #instances [role="gridcell"]');
    for (const cell of cells) {
      const text = (cell.textContent || '').trim();
      if (text.startsWith('▶')) {
        if (text !== shown) { cell.scrollIntoView({ block: 'nearest', inline: 'nearest' }); }
        shown = text;
        return;
      }
    }
    shown = '';
  };
  new MutationObserver(() => {
    if (!pending) { pending = true; requestAnimationFrame(reveal); }
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
}
"""

CSS = """
#canvas img { cursor: crosshair; }
#segmenter-status.fallback { border-left: 4px solid #e67e22; padding-left: 8px; }
#header { gap: 4px; }
#header .prose h3 { margin: 0; }
#message { min-height: 1.6em; }
#actions { flex-wrap: wrap; gap: 6px; }
#actions button { min-width: 0; flex: 1 1 auto; }
#brush-help { font-size: 0.85em; }
#shortcuts, #shortcuts table { font-size: 0.8em; }
#instances table, #queue table { font-size: 0.85em; }
#queue td, #queue th { padding: 2px 4px; }
#shortcuts td, #shortcuts th { padding: 2px 6px; }
"""
