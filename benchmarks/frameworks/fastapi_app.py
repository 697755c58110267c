"""FastAPI: GET /json returning a dict, POST /items with a pydantic body model.

No `from __future__ import annotations`: FastAPI reads the body model from the handler's
annotation at run time.
"""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel


class Item(BaseModel):
    name: str
    description: str | None = None
    price: float
    tax: float | None = None
    tags: list[str] = []
    quantity: int = 1
    in_stock: bool = True


class Priced(Item):
    total: float


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/json")
async def json_hello():
    return {"message": "Hello, world!"}


@app.post("/items")
async def create_item(item: Item) -> Priced:
    return Priced(**item.model_dump(), total=round((item.price + (item.tax or 0)) * item.quantity, 2))


@app.get("/", response_class=PlainTextResponse)
async def hello():
    return "Hello, world!"
