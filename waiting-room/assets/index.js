// Lists the events a fan can join (GET /v1/events).
"use strict";
(async () => {
  await i18n.ready;
  const status = document.getElementById("events-status");
  const list = document.getElementById("events");
  try {
    const response = await fetch("/v1/events");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const { events } = await response.json();
    status.textContent = events.length ? "" : i18n.t("index.empty");
    for (const event of events) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/events/${encodeURIComponent(event.event_id)}`;
      link.textContent = event.name || event.event_id;
      item.append(link);
      list.append(item);
    }
  } catch (error) {
    status.textContent = i18n.t("index.failed");
  }
})();
