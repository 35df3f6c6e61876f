// Counts a view of the page that embeds it, on the counter its tag names:
//   <script src="https://visits.example.com/tracker.js"
//           data-namespace="example.com" data-key="home" defer></script>
// It sends the page's path and the referring page's address, both without their query
// string, which can carry personal data, to the server it was loaded from. With the
// attribute data-respect-dnt, a browser that sends Do Not Track is not counted.
// Both go in the query string of a POST without a body: a request any page may send to another
// origin without a preflight request, and the cheapest hit for the server to read.
// `make tracker` writes tracker.min.js, the file the server sends, from this one.
(function () {
  var script = document.currentScript;
  var data = script.dataset;
  var dnt = navigator.doNotTrack === "1" || window.doNotTrack === "1";
  if (!data.namespace || !data.key || (dnt && data.respectDnt !== undefined)) return;
  var path = "/v1/counters/" + encodeURIComponent(data.namespace) + "/" + encodeURIComponent(data.key);
  var url = new URL(path + "/hits", script.src);
  url.searchParams.set("page", location.pathname.slice(0, 512));
  var referrer = document.referrer.split(/[?#]/)[0];
  if (/^https?:\/\//.test(referrer)) url.searchParams.set("referrer", referrer.slice(0, 512));
  if (!(navigator.sendBeacon && navigator.sendBeacon(url.href))) {
    fetch(url.href, { method: "POST", keepalive: true, mode: "no-cors" }).catch(function () {});
  }
})();
