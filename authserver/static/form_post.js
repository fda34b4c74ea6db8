// Submits the form_post response (OAuth 2.0 Form Post Response Mode) as soon as it loads; a
// <noscript> button does the same without JavaScript.
document.getElementById("form-post").submit();
