// The editor pieces the console uses, bundled from the lockfile's CodeMirror 6 packages.
export { EditorView, basicSetup } from "codemirror";
export { keymap } from "@codemirror/view";
export { EditorState, EditorSelection, Prec, Compartment } from "@codemirror/state";
export { sql, PostgreSQL } from "@codemirror/lang-sql";
