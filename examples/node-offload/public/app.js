fetch("/api/hello").then((r) => r.json()).then((j) => { document.getElementById("api").textContent = JSON.stringify(j); });
