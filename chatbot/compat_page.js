
() => {
  const lang = (document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  const texts = TEXTS[lang] || TEXTS.en;
  const set = (element, name, value) => {
    if (element.getAttribute(name) !== value) element.setAttribute(name, value);
  };
  const name = () => {
    const box = document.getElementById("message");
    const label = box && box.querySelector('[data-testid="block-info"]');
    const area = box && box.querySelector("textarea");
    if (label && area && label.textContent.trim()) set(area, "aria-label", label.textContent.trim());
    document.querySelectorAll(".thought-group .title").forEach((title) => {
      set(title, "aria-expanded", title.classList.contains("expanded") ? "true" : "false");
      title.querySelectorAll("button").forEach((arrow) => set(arrow, "inert", ""));
    });
    document.querySelectorAll('#chatbot [data-testid="bot"][aria-label], #chatbot [data-testid="user"][aria-label]')
      .forEach((message) => set(message, "role", "article"));
    document.querySelectorAll('#chatbot .examples[role="list"]').forEach((list) => list.removeAttribute("role"));
    document.querySelectorAll("#chatbot .katex").forEach((math) => {
      const source = math.querySelector('annotation[encoding="application/x-tex"]');
      const wrap = math.parentElement;
      if (!source || !wrap || math.closest(".katex-display")) return;
      const tex = source.textContent, next = wrap.nextSibling ? wrap.nextSibling.textContent : "";
      if (/^\S[\s\S]*\s$/.test(tex) || /^\d/.test(next)) wrap.replaceWith(`$${tex}$`);
    });
    document.querySelectorAll('[data-testid="toast-text"]').forEach((toast) => {
      const type = /^Invalid file types?: (.*)\. Only .* allowed\.$/s.exec(toast.textContent);
      const size = /^File\(s\) exceed the maximum allowed size of (\S+ \S+): (.*)$/s.exec(toast.textContent);
      if (type) toast.textContent = texts.refused_type.replace("{names}", type[1]);
      const limit = size && size[1].replace(/b$/, "B");  // Gradio writes kilobytes "Kb"
      if (size) toast.textContent = texts.refused_size.replace("{names}", size[2]).replace("{limit}", limit);
    });
  };
  name();
  new MutationObserver(name).observe(document.body,
    {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
  return [];
}
