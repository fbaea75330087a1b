"""Lookup tables for the MathML -> LaTeX converter (stages/mathml_latex.py): extend them here.

Character tables map one Unicode character to math-mode TeX. ``SYMBOLS`` is what token elements
(mi, mn, mo) go through, character by character.
"""

from __future__ import annotations


GREEK: dict[str, str] = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon",
    "ϵ": r"\epsilon", "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ϑ": r"\vartheta", "ι": r"\iota",
    "κ": r"\kappa", "ϰ": r"\varkappa", "λ": r"\lambda", "μ": r"\mu", "µ": r"\mu", "ν": r"\nu",
    "ξ": r"\xi", "ο": "o", "π": r"\pi", "ϖ": r"\varpi", "ρ": r"\rho", "ϱ": r"\varrho",
    "σ": r"\sigma", "ς": r"\varsigma", "τ": r"\tau", "υ": r"\upsilon", "φ": r"\varphi",
    "ϕ": r"\phi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega",
    "Α": "A", "Β": "B", "Γ": r"\Gamma", "Δ": r"\Delta", "Ε": "E", "Ζ": "Z", "Η": "H",
    "Θ": r"\Theta", "Ι": "I", "Κ": "K", "Λ": r"\Lambda", "Μ": "M", "Ν": "N", "Ξ": r"\Xi",
    "Ο": "O", "Π": r"\Pi", "Ρ": "P", "Σ": r"\Sigma", "Τ": "T", "Υ": r"\Upsilon", "Φ": r"\Phi",
    "Χ": "X", "Ψ": r"\Psi", "Ω": r"\Omega", "Ϝ": r"\digamma",
}

LETTERLIKE: dict[str, str] = {
    "∞": r"\infty", "∂": r"\partial", "∇": r"\nabla", "ℓ": r"\ell", "ℏ": r"\hbar", "ℎ": "h",
    "℘": r"\wp", "ℜ": r"\Re", "ℑ": r"\Im", "ℵ": r"\aleph", "ℶ": r"\beth", "ı": r"\imath",
    "ȷ": r"\jmath", "∅": r"\emptyset", "⌀": r"\varnothing", "ð": r"\eth", "Å": r"\AA",
    "ℝ": r"\mathbb{R}", "ℕ": r"\mathbb{N}", "ℤ": r"\mathbb{Z}", "ℚ": r"\mathbb{Q}",
    "ℂ": r"\mathbb{C}", "ℙ": r"\mathbb{P}", "ℍ": r"\mathbb{H}",
    "ℒ": r"\mathcal{L}", "ℋ": r"\mathcal{H}", "ℐ": r"\mathcal{I}", "ℛ": r"\mathcal{R}",
    "ℬ": r"\mathcal{B}", "ℰ": r"\mathcal{E}", "ℱ": r"\mathcal{F}", "ℳ": r"\mathcal{M}",
    "ℭ": r"\mathfrak{C}", "ℌ": r"\mathfrak{H}", "ℨ": r"\mathfrak{Z}",
}

OPERATORS: dict[str, str] = {
    # large operators
    "∑": r"\sum", "∏": r"\prod", "∐": r"\coprod", "∫": r"\int", "∬": r"\iint", "∭": r"\iiint",
    "∮": r"\oint", "∯": r"\oiint", "⋃": r"\bigcup", "⋂": r"\bigcap", "⨁": r"\bigoplus",
    "⨂": r"\bigotimes", "⨀": r"\bigodot", "⋁": r"\bigvee", "⋀": r"\bigwedge", "⨄": r"\biguplus",
    "⨆": r"\bigsqcup",
    # relations
    "≤": r"\leq", "≥": r"\geq", "≦": r"\leqq", "≧": r"\geqq", "⩽": r"\leqslant", "⩾": r"\geqslant",
    "≠": r"\neq", "≈": r"\approx", "≡": r"\equiv", "∼": r"\sim", "≃": r"\simeq", "≅": r"\cong",
    "≪": r"\ll", "≫": r"\gg", "∝": r"\propto", "⊥": r"\perp", "∥": r"\parallel", "∦": r"\nparallel",
    "∣": r"\mid", "∤": r"\nmid", "≺": r"\prec", "≻": r"\succ", "⪯": r"\preceq", "⪰": r"\succeq",
    "≐": r"\doteq", "≜": r"\triangleq", "≔": ":=", "≍": r"\asymp", "⊢": r"\vdash", "⊨": r"\models",
    "⊣": r"\dashv", "≮": r"\not<", "≯": r"\not>", "≰": r"\nleq", "≱": r"\ngeq", "≉": r"\not\approx",
    "≢": r"\not\equiv", "≁": r"\nsim",
    # sets and logic
    "∈": r"\in", "∉": r"\notin", "∋": r"\ni", "∌": r"\not\ni", "⊂": r"\subset", "⊃": r"\supset",
    "⊆": r"\subseteq", "⊇": r"\supseteq", "⊊": r"\subsetneq", "⊋": r"\supsetneq", "⊄": r"\not\subset",
    "⊈": r"\nsubseteq", "⊉": r"\nsupseteq", "∪": r"\cup", "∩": r"\cap", "∖": r"\setminus",
    "⊎": r"\uplus", "⊔": r"\sqcup", "⊓": r"\sqcap", "⊏": r"\sqsubset", "⊑": r"\sqsubseteq",
    "∀": r"\forall", "∃": r"\exists", "∄": r"\nexists", "¬": r"\neg", "∧": r"\wedge", "∨": r"\vee",
    "⊤": r"\top", "∴": r"\therefore", "∵": r"\because",
    # binary operators
    "±": r"\pm", "∓": r"\mp", "×": r"\times", "÷": r"\div", "·": r"\cdot", "⋅": r"\cdot",
    "∘": r"\circ", "∙": r"\bullet", "•": r"\bullet", "∗": r"\ast", "⋆": r"\star", "†": r"\dagger",
    "‡": r"\ddagger", "⊕": r"\oplus", "⊖": r"\ominus", "⊗": r"\otimes", "⊘": r"\oslash",
    "⊙": r"\odot", "⋄": r"\diamond", "◇": r"\Diamond", "△": r"\triangle", "▽": r"\triangledown",
    "⋉": r"\ltimes", "⋊": r"\rtimes", "≀": r"\wr", "−": "-", "‐": "-", "–": "-", "∕": "/",
    "⁄": "/", "∠": r"\angle", "∡": r"\measuredangle", "□": r"\square", "■": r"\blacksquare",
    "★": r"\bigstar", "♯": r"\sharp", "♭": r"\flat", "♮": r"\natural", "✓": r"\checkmark",
    "°": r"^{\circ}", "√": r"\surd", "∎": r"\blacksquare",
    # arrows
    "→": r"\to", "←": r"\leftarrow", "↔": r"\leftrightarrow", "⇒": r"\Rightarrow", "⇐": r"\Leftarrow",
    "⇔": r"\Leftrightarrow", "⟶": r"\longrightarrow", "⟵": r"\longleftarrow",
    "⟷": r"\longleftrightarrow", "⟹": r"\implies", "⟸": r"\impliedby", "⟺": r"\iff",
    "↦": r"\mapsto", "⟼": r"\longmapsto", "↑": r"\uparrow", "↓": r"\downarrow", "↕": r"\updownarrow",
    "⇑": r"\Uparrow", "⇓": r"\Downarrow", "↗": r"\nearrow", "↘": r"\searrow", "↖": r"\nwarrow",
    "↙": r"\swarrow", "↪": r"\hookrightarrow", "↩": r"\hookleftarrow", "⇀": r"\rightharpoonup",
    "⇌": r"\rightleftharpoons", "↠": r"\twoheadrightarrow", "⇝": r"\leadsto",
    # primes, dots
    "′": "'", "″": "''", "‴": "'''", "…": r"\ldots", "⋯": r"\cdots", "⋮": r"\vdots", "⋱": r"\ddots",
    # fences
    "⟨": r"\langle", "⟩": r"\rangle", "〈": r"\langle", "〉": r"\rangle", "‖": r"\|",
    "⌊": r"\lfloor", "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil", "⟦": r"[\![", "⟧": r"]\!]",
    # invisible operators: function application, times, separator, plus
    "\u2061": "", "\u2062": "", "\u2063": "", "\u2064": "", "\u200b": "",
}

# Characters that must be escaped in math mode (ASCII).
MATH_ESCAPES: dict[str, str] = {
    "{": r"\{", "}": r"\}", "%": r"\%", "#": r"\#", "&": r"\&", "_": r"\_", "$": r"\$",
    "\\": r"\backslash", "~": r"\sim", "^": r"\wedge", "\u00a0": r"\ ",
}

# Escapes inside \text{...} (text mode).
TEXT_ESCAPES: dict[str, str] = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\~{}", "\u00a0": " ",
}

SYMBOLS: dict[str, str] = {**GREEK, **LETTERLIKE, **OPERATORS, **MATH_ESCAPES}

FUNCTION_NAMES = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "coth", "log", "ln", "lg", "exp", "lim", "liminf", "limsup", "max", "min", "sup", "inf", "det",
    "dim", "ker", "deg", "gcd", "hom", "arg", "Pr",
})
# Operator names whose scripts go below/above in display style (rendered \name_{..}^{..}).
LIMIT_WORDS = frozenset({"lim", "liminf", "limsup", "max", "min", "sup", "inf", "det", "gcd", "Pr"})
LARGE_OPERATORS = frozenset({
    r"\sum", r"\prod", r"\coprod", r"\int", r"\iint", r"\iiint", r"\oint", r"\oiint", r"\bigcup",
    r"\bigcap", r"\bigoplus", r"\bigotimes", r"\bigodot", r"\bigvee", r"\bigwedge", r"\biguplus",
    r"\bigsqcup"} | {"\\" + word for word in LIMIT_WORDS})

MATHVARIANT_COMMANDS: dict[str, str] = {
    "bold": r"\mathbf", "double-struck": r"\mathbb", "script": r"\mathcal", "bold-script": r"\mathcal",
    "fraktur": r"\mathfrak", "bold-fraktur": r"\mathfrak", "normal": r"\mathrm", "italic": r"\mathit",
    "bold-italic": r"\boldsymbol", "sans-serif": r"\mathsf", "bold-sans-serif": r"\mathsf",
    "sans-serif-italic": r"\mathsf", "sans-serif-bold-italic": r"\mathsf", "monospace": r"\mathtt",
}

# Style words in Unicode names of Mathematical Alphanumeric Symbols (U+1D400..U+1D7FF), longest first.
UNICODE_STYLE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("BOLD ITALIC ", r"\boldsymbol"), ("BOLD SCRIPT ", r"\mathcal"), ("BOLD FRAKTUR ", r"\mathfrak"),
    ("SANS-SERIF BOLD ITALIC ", r"\mathsf"), ("SANS-SERIF BOLD ", r"\mathsf"),
    ("SANS-SERIF ITALIC ", r"\mathsf"), ("SANS-SERIF ", r"\mathsf"), ("DOUBLE-STRUCK ", r"\mathbb"),
    ("MONOSPACE ", r"\mathtt"), ("FRAKTUR ", r"\mathfrak"), ("SCRIPT ", r"\mathcal"),
    ("BOLD ", r"\mathbf"), ("ITALIC ", ""),
)

# Accents over (mover) and under (munder) a base: character -> (command, wide command).
OVER_ACCENTS: dict[str, tuple[str, str]] = {
    "^": (r"\hat", r"\widehat"), "ˆ": (r"\hat", r"\widehat"), "̂": (r"\hat", r"\widehat"),
    "~": (r"\tilde", r"\widetilde"), "˜": (r"\tilde", r"\widetilde"), "̃": (r"\tilde", r"\widetilde"),
    "¯": (r"\bar", r"\overline"), "ˉ": (r"\bar", r"\overline"), "̄": (r"\bar", r"\overline"),
    "‾": (r"\overline", r"\overline"), "―": (r"\overline", r"\overline"), "_": (r"\overline", r"\overline"),
    "→": (r"\vec", r"\overrightarrow"), "⃗": (r"\vec", r"\overrightarrow"),
    "←": (r"\overleftarrow", r"\overleftarrow"), "↔": (r"\overleftrightarrow", r"\overleftrightarrow"),
    "˙": (r"\dot", r"\dot"), "̇": (r"\dot", r"\dot"), ".": (r"\dot", r"\dot"),
    "¨": (r"\ddot", r"\ddot"), "̈": (r"\ddot", r"\ddot"), "⃛": (r"\dddot", r"\dddot"),
    "ˇ": (r"\check", r"\check"), "̌": (r"\check", r"\check"), "˘": (r"\breve", r"\breve"),
    "´": (r"\acute", r"\acute"), "`": (r"\grave", r"\grave"), "˚": (r"\mathring", r"\mathring"),
    "⏞": (r"\overbrace", r"\overbrace"), "︷": (r"\overbrace", r"\overbrace"),
}
UNDER_ACCENTS: dict[str, str] = {
    "_": r"\underline", "¯": r"\underline", "‾": r"\underline", "―": r"\underline", "̲": r"\underline",
    "⏟": r"\underbrace", "︸": r"\underbrace", "→": r"\underrightarrow", "←": r"\underleftarrow",
}
BRACES = frozenset({r"\overbrace", r"\underbrace"})

# Fence characters usable after \left / \right; "" is the invisible fence ".".
FENCES: dict[str, str] = {
    "(": "(", ")": ")", "[": "[", "]": "]", "{": r"\{", "}": r"\}", "|": "|", "∣": "|", "‖": r"\|",
    "∥": r"\|", "⟨": r"\langle", "⟩": r"\rangle", "〈": r"\langle", "〉": r"\rangle", "⌊": r"\lfloor",
    "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil", "": ".",
}
# A table between these fences becomes the matching matrix environment.
MATRIX_ENVIRONMENTS: dict[tuple[str, str], str] = {
    ("(", ")"): "pmatrix", ("[", "]"): "bmatrix", ("{", "}"): "Bmatrix", ("|", "|"): "vmatrix",
    ("∣", "∣"): "vmatrix", ("‖", "‖"): "Vmatrix", ("∥", "∥"): "Vmatrix", ("{", ""): "cases",
}

# Named widths (MathML 3) in em.
NAMED_SPACES: dict[str, float] = {
    "veryverythinmathspace": 1 / 18, "verythinmathspace": 2 / 18, "thinmathspace": 3 / 18,
    "mediummathspace": 4 / 18, "thickmathspace": 5 / 18, "verythickmathspace": 6 / 18,
    "veryverythickmathspace": 7 / 18,
}
UNIT_EM: dict[str, float] = {
    "em": 1.0, "ex": 0.43, "mu": 1 / 18, "pt": 0.1, "px": 0.0625, "in": 7.2, "cm": 2.85, "mm": 0.285,
    "pc": 1.2, "": 1.0,
}
# Arrow operators that MathJax builds with a thick space on each side; the spaces are part of them.
SPACED_ARROWS = frozenset({"⟺", "⟹", "⟸"})
