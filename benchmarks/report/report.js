// Sorts a table.sortable by the column whose heading button is clicked (numbers by their data-sort
// value, text otherwise; a second click reverses). The only script of the report (docs/report.md).
"use strict";
document.querySelectorAll("table.sortable thead button[data-sort-column]").forEach((button) => {
  button.addEventListener("click", () => {
    const table = button.closest("table");
    const column = Number(button.dataset.sortColumn);
    const heading = button.closest("th");
    const descending = heading.getAttribute("aria-sort") !== "descending";
    table.querySelectorAll("thead th").forEach((th) => th.removeAttribute("aria-sort"));
    heading.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const key = (row) => {
      const cell = row.children[column];
      const raw = cell ? (cell.dataset.sort ?? cell.textContent) : "";
      const number = Number.parseFloat(raw);
      return Number.isNaN(number) ? raw.toLowerCase() : number;
    };
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return descending ? -order : order;
    });
    rows.forEach((row) => body.appendChild(row));
  });
});
