// The pages' words, in the fan's language. The server picks the language (a `lang`
// cookie set by the switch, else the browser's Accept-Language) and writes it in
// <html lang>, with every language it has in data-languages; this script loads that
// language's messages (/assets/messages/{lang}.json, English behind them for anything
// missing), fills every [data-i18n] element, and offers t(), time and number formats
// in the fan's own time zone, and the language switch (#language).
"use strict";

const i18n = (() => {
  const root = document.documentElement;
  const lang = root.lang || "en";
  const languages = (root.dataset.languages || "en").split(",");
  let messages = {};

  async function catalog(tag) {
    try {
      const response = await fetch(`/assets/messages/${encodeURIComponent(tag)}.json`);
      return response.ok ? await response.json() : {};
    } catch {
      return {};
    }
  }

  function t(key, params = {}) {
    const text = messages[key] || key;
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      params[name] === undefined ? whole : String(params[name]),
    );
  }

  function apply(scope = document) {
    for (const element of scope.querySelectorAll("[data-i18n]")) {
      element.textContent = t(element.dataset.i18n);
    }
  }

  // A language tag the browser's Intl does not know falls back to its default.
  const intlLang = (() => {
    try {
      return Intl.getCanonicalLocales(lang)[0];
    } catch {
      return undefined;
    }
  })();
  const formatTime = (iso) =>
    new Intl.DateTimeFormat(intlLang, { dateStyle: "full", timeStyle: "long" }).format(new Date(iso));
  const formatNumber = (value) => Number(value).toLocaleString(intlLang);

  // "1:02:03" / "2:03": how long until an instant.
  function formatCountdown(milliseconds) {
    const total = Math.max(0, Math.ceil(milliseconds / 1000));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return hours > 0
      ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}`
      : `${minutes}:${seconds}`;
  }

  function languageSwitch() {
    const select = document.getElementById("language");
    if (!select || languages.length < 2) return;
    const names = typeof Intl.DisplayNames === "function" ? Intl.DisplayNames : null;
    for (const tag of languages) {
      const option = document.createElement("option");
      option.value = tag;
      try {
        option.textContent = names ? new names([tag], { type: "language" }).of(tag) : tag;
      } catch {
        option.textContent = tag;
      }
      option.selected = tag === lang;
      select.append(option);
    }
    select.parentElement.hidden = false;
    select.addEventListener("change", () => {
      document.cookie = `lang=${encodeURIComponent(select.value)}; path=/; max-age=31536000; SameSite=Lax`;
      location.reload();
    });
  }

  const ready = (async () => {
    const [english, chosen] = await Promise.all([
      catalog("en"),
      lang === "en" ? Promise.resolve({}) : catalog(lang),
    ]);
    messages = { ...english, ...chosen };
    apply();
    languageSwitch();
  })();

  return { lang, ready, t, apply, formatTime, formatNumber, formatCountdown };
})();
