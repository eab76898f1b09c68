// SMART App Launch 2.0 (EHR launch with `iss` and `launch`, or standalone with `iss` only):
// fhirclient discovers the endpoints from `iss`/.well-known/smart-configuration and sends the
// authorize request with aud = iss, a random state and a PKCE S256 challenge.
(async function () {
  const status = document.getElementById('status');
  const params = new URLSearchParams(window.location.search);
  if (!params.get('iss') && !params.get('fhirServiceUrl')) {
    status.textContent = 'Open this app from a card in the EHR (the link adds iss and launch), '
      + 'or add ?iss=<FHIR base URL> for a standalone launch.';
    return;
  }
  try {
    const cfg = await (await fetch('api/config')).json();
    await FHIR.oauth2.authorize({
      clientId: cfg.clientId,
      scope: cfg.scope,
      redirectUri: './',
      pkceMode: 'required', // refuse a server that does not offer S256
    });
  } catch (err) {
    status.textContent = 'The launch failed: ' + (err && err.message ? err.message : err);
  }
})();
