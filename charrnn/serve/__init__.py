"""``charrnn serve``: trained models over HTTP.

    app.py          create_app(models, limits): the FastAPI application and its routes
    completions.py  POST /v1/completions (OpenAI's completions API, plus charrnn's controls)
    predict.py      POST /v1/predict (classifiers, taggers, encoder-decoders)
    models.py       a served model: its name, task and where its work runs
    worker.py       one generation thread per language model, off the event loop
    batching.py     continuous batching of sampling requests (and the one-by-one alternative)
    schemas.py      request bodies; errors.py: the OpenAI error shape, the body size limit
    static/         the web page at GET /

FastAPI and uvicorn are an optional extra (``pip install 'charrnn[serve]'``); nothing
else in charrnn imports this package.
"""
