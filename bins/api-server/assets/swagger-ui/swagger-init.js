// validatorUrl: null, or the page would send the document to validator.swagger.io.
// A file of its own rather than an inline script: the page's policy runs only this server's.
window.onload = () => {
  window.ui = SwaggerUIBundle({
    url: "/api-docs/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
  });
};
