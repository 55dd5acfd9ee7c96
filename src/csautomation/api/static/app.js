/* The escalation pages' one script, served by the app: no framework, no other site.
   It only enhances what works without it:
   - an account's several escalations collapse behind a button that expands them (without
     the script every escalation row shows);
   - a form marked data-live posts with fetch, its answer is announced in the page's live
     region, and the changed part is replaced in place from a fresh copy of the page: the
     account's rows on the list, the content on an escalation's page (without the script
     the same form posts and the server redirects back with the message). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function announce(kind, text) {
    var region = document.getElementById("flashes");
    if (!region) return;
    var line = document.createElement("p");
    line.className = "flash " + kind;
    line.setAttribute("data-testid", "flash");
    line.textContent = text;
    region.replaceChildren(line);
  }

  function withAttribute(root, selector, name, value) {
    var found = root.querySelectorAll(selector);
    for (var i = 0; i < found.length; i++) {
      if (found[i].getAttribute(name) === value) return found[i];
    }
    return null;
  }

  function setOpen(group, open) {
    group.classList.toggle("open", open);
    var button = group.querySelector("button.expand");
    if (button) button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  /* The fresh page's copy of what the form changed, in place of the old one; returns
     the element to move the focus to (the focused button is gone). */
  async function refresh(form) {
    var response = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error("the page did not reload: " + response.status);
    var fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    var group = form.closest("tbody[data-account-id]");
    if (group) {
      var id = group.getAttribute("data-account-id");
      var copy = withAttribute(fresh, "tbody[data-account-id]", "data-account-id", id);
      if (!copy) {  // no longer listed: resolved, or outside the filter now
        group.remove();
        return document.querySelector("h1");
      }
      var row = form.closest("tr[data-workflow-id]");
      var adopted = document.importNode(copy, true);
      setOpen(adopted, group.classList.contains("open"));
      group.replaceWith(adopted);
      wire(adopted);
      var again = row && withAttribute(adopted, "tr[data-workflow-id]", "data-workflow-id",
        row.getAttribute("data-workflow-id"));
      return (again || adopted).querySelector("[data-testid=escalation-link]");
    }
    var content = document.getElementById("content");
    var freshContent = fresh.getElementById("content");
    if (!content || !freshContent) throw new Error("the page has no content to replace");
    var replaced = document.importNode(freshContent, true);
    content.replaceWith(replaced);
    wire(replaced);
    var status = replaced.querySelector("[data-testid=status]") || replaced.querySelector("h1");
    if (status) status.setAttribute("tabindex", "-1");
    return status;
  }

  async function submit(event) {
    var form = event.currentTarget;
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var answer;
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),  // the CSRF token included
        headers: { Accept: "application/json" },
      });
      var type = response.headers.get("content-type") || "";
      if (type.indexOf("application/json") !== 0) {
        form.submit();  // signed out, refused: the server's page says why
        return;
      }
      answer = await response.json();
    } catch (err) {
      buttons.forEach(function (b) { b.disabled = false; });
      announce("error", "Not sent: the server did not answer. Try again.");
      return;
    }
    buttons.forEach(function (b) { b.disabled = false; });
    announce(answer.ok ? "ok" : "error", answer.message);
    if (!answer.ok) return;
    try {
      var focus = await refresh(form);
      if (focus) focus.focus();
    } catch (err) {
      location.reload();  // done, but the page could not be updated in place
    }
  }

  function wire(root) {
    root.querySelectorAll("button.expand").forEach(function (button) {
      button.addEventListener("click", function () {
        var group = button.closest("tbody");
        setOpen(group, !group.classList.contains("open"));
      });
    });
    root.querySelectorAll("form[data-live]").forEach(function (form) {
      form.addEventListener("submit", submit);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wire(document); });
})();
